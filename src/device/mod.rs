//! The device side, built in: `benchlink send` (act as a device once) and
//! `benchlink device` (a simulated camera board). Both speak the native frame
//! protocol through [`link::FrameLink`], the same codec the console uses.

pub mod bridge;
pub mod image;
pub mod link;
pub mod receive;
pub mod send;
pub mod simulator;
