//! The article's protocol ("cf", after its `c` and `f` markers), both versions.
//!
//! The console greets first; the device may answer `hello server`. Then each
//! message is one TCP read: `c` then a command (in the same read or the next one,
//! since TCP merges `c` and `weeding` into `cweeding` as often as not), `f` or
//! `begin to send` followed by a file that runs until the device closes the
//! connection, or anything else, which is plain text.

use bytes::Bytes;

pub const HANDSHAKE: &[u8] = b"hello server";
/// The first version of the article's client announced its file with this.
pub const BEGIN_TO_SEND: &[u8] = b"begin to send";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CfMessage {
    Handshake,
    /// The bytes after `c`, line ending trimmed.
    Command(Bytes),
    /// Anything that is not a marker, line ending trimmed (may hold several lines).
    Text(Bytes),
    /// A file begins; every later byte is [`CfMessage::FileData`] until the close.
    FileStart,
    FileData(Bytes),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Messages,
    AwaitingCommand,
    File,
}

#[derive(Debug)]
pub struct CfDecoder {
    state: State,
    /// Chosen by auto detection rather than by a `cf://` listener: a read that is a
    /// newline-terminated text line (a person typing into nc) is text even when it
    /// begins with `c` or `f`. The article's devices never end a message in a newline.
    lenient: bool,
}

impl CfDecoder {
    pub fn new(lenient: bool) -> Self {
        Self {
            state: State::Messages,
            lenient,
        }
    }

    /// Chosen by auto detection (not by a `cf://` listener).
    pub fn chosen_by_auto(&self) -> bool {
        self.lenient
    }

    pub fn in_file(&self) -> bool {
        self.state == State::File
    }

    /// Feeds one read, exactly as the socket returned it.
    pub fn push(&mut self, mut read: Bytes, out: &mut Vec<CfMessage>) {
        loop {
            if read.is_empty() {
                return;
            }
            match self.state {
                State::File => {
                    out.push(CfMessage::FileData(read));
                    return;
                }
                State::AwaitingCommand => {
                    self.state = State::Messages;
                    out.push(CfMessage::Command(trim_line_end(read)));
                    return;
                }
                State::Messages => {}
            }
            if read.starts_with(HANDSHAKE) {
                out.push(CfMessage::Handshake);
                let rest = read.split_off(HANDSHAKE.len());
                read = trim_line_start(rest);
                continue;
            }
            if read.starts_with(BEGIN_TO_SEND) {
                self.start_file(read.split_off(BEGIN_TO_SEND.len()), out);
                return;
            }
            let typed_line = self.lenient && is_typed_line(&read);
            match read[0] {
                b'f' if !typed_line => self.start_file(read.split_off(1), out),
                b'c' if !typed_line => {
                    let command = read.split_off(1);
                    if command.is_empty() {
                        self.state = State::AwaitingCommand;
                    } else {
                        out.push(CfMessage::Command(trim_line_end(command)));
                    }
                }
                _ => out.push(CfMessage::Text(trim_line_end(read))),
            }
            return;
        }
    }

    fn start_file(&mut self, rest: Bytes, out: &mut Vec<CfMessage>) {
        self.state = State::File;
        out.push(CfMessage::FileStart);
        if !rest.is_empty() {
            out.push(CfMessage::FileData(rest));
        }
    }
}

fn is_typed_line(read: &[u8]) -> bool {
    read.len() > 1 && read.ends_with(b"\n") && std::str::from_utf8(read).is_ok()
}

fn trim_line_end(mut b: Bytes) -> Bytes {
    while matches!(b.last(), Some(b'\n' | b'\r')) {
        b.truncate(b.len() - 1);
    }
    b
}

fn trim_line_start(b: Bytes) -> Bytes {
    let skip = b.iter().take_while(|&&c| c == b'\n' || c == b'\r').count();
    b.slice(skip..)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What a session makes of the messages: texts and commands in order, and the file.
    #[derive(Debug, Default, PartialEq)]
    struct Outcome {
        handshakes: usize,
        commands: Vec<Vec<u8>>,
        texts: Vec<Vec<u8>>,
        files: usize,
        file: Vec<u8>,
    }

    fn run(reads: &[Vec<u8>], lenient: bool) -> Outcome {
        let mut dec = CfDecoder::new(lenient);
        let mut msgs = Vec::new();
        for r in reads {
            dec.push(Bytes::copy_from_slice(r), &mut msgs);
        }
        let mut o = Outcome::default();
        for m in msgs {
            match m {
                CfMessage::Handshake => o.handshakes += 1,
                CfMessage::Command(c) => o.commands.push(c.to_vec()),
                CfMessage::Text(t) => o.texts.push(t.to_vec()),
                CfMessage::FileStart => o.files += 1,
                CfMessage::FileData(d) => o.file.extend_from_slice(&d),
            }
        }
        o
    }

    /// Every way TCP may merge neighbouring sends into one read.
    fn merges(sends: &[&[u8]]) -> Vec<Vec<Vec<u8>>> {
        let gaps = sends.len().saturating_sub(1);
        (0..1u32 << gaps)
            .map(|mask| {
                let mut reads: Vec<Vec<u8>> = vec![sends[0].to_vec()];
                for (i, s) in sends.iter().enumerate().skip(1) {
                    if mask & (1 << (i - 1)) != 0 {
                        if let Some(last) = reads.last_mut() {
                            last.extend_from_slice(s);
                        }
                    } else {
                        reads.push(s.to_vec());
                    }
                }
                reads
            })
            .collect()
    }

    fn image() -> Vec<u8> {
        let mut img = b"BM".to_vec();
        img.extend((0..3000u32).map(|i| (i * 7 % 251) as u8));
        img
    }

    #[test]
    fn second_version_client_in_every_merge() {
        let img = image();
        let (a, b) = img.split_at(1000);
        let (b, c) = b.split_at(1500);
        // The article sleeps between the groups, so only sends within a group merge.
        for lenient in [false, true] {
            for cmd in merges(&[b"c", b"weeding"]) {
                for file in merges(&[b"f", a, b, c]) {
                    let mut reads = vec![b"hello server".to_vec()];
                    reads.extend(cmd.iter().cloned());
                    reads.extend(file.iter().cloned());
                    let o = run(&reads, lenient);
                    assert_eq!(o.handshakes, 1);
                    assert_eq!(o.commands, vec![b"weeding".to_vec()], "{cmd:?}");
                    assert!(o.texts.is_empty());
                    assert_eq!(o.files, 1);
                    assert!(
                        o.file == img,
                        "file differs for reads {:?}",
                        file.iter().map(Vec::len).collect::<Vec<_>>()
                    );
                }
            }
        }
    }

    #[test]
    fn first_version_client_marker_merged_with_file_bytes() {
        let img = image();
        for split in [0, 1, 13, 500, img.len()] {
            let mut first = BEGIN_TO_SEND.to_vec();
            first.extend_from_slice(&img[..split]);
            let reads = vec![first, img[split..].to_vec()];
            let o = run(&reads, true);
            assert_eq!((o.files, o.commands.len(), o.texts.len()), (1, 0, 0));
            assert_eq!(o.file, img);
        }
    }

    #[test]
    fn file_bytes_that_look_like_markers_stay_file_bytes() {
        let o = run(
            &[b"f".to_vec(), b"cweeding".to_vec(), b"hello server".to_vec()],
            false,
        );
        assert_eq!(o.file, b"cweedinghello server");
        assert!(o.commands.is_empty());
    }

    #[test]
    fn other_messages_are_text_and_handshake_may_carry_more() {
        let o = run(
            &[b"hello servercstatus".to_vec(), b"temperature 21.5\r\n".to_vec()],
            false,
        );
        assert_eq!(o.handshakes, 1);
        assert_eq!(o.commands, vec![b"status".to_vec()]);
        assert_eq!(o.texts, vec![b"temperature 21.5".to_vec()]);
    }

    #[test]
    fn typed_lines_are_text_only_when_lenient() {
        let reads = vec![b"check this\n".to_vec(), b"fine thanks\n".to_vec()];
        let lenient = run(&reads, true);
        assert_eq!(
            lenient.texts,
            vec![b"check this".to_vec(), b"fine thanks".to_vec()]
        );
        assert_eq!(lenient.files, 0);
        let strict = run(&reads, false);
        assert_eq!(strict.commands, vec![b"heck this".to_vec()]);
        assert_eq!(strict.files, 1);
        assert_eq!(strict.file, b"ine thanks\n");
    }

    proptest! {
        #[test]
        fn arbitrary_reads_never_panic_or_invent_bytes(
            reads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..64), 0..24),
            lenient in any::<bool>(),
        ) {
            let o = run(&reads, lenient);
            let total: usize = reads.iter().map(Vec::len).sum();
            let shown: usize = o.commands.iter().chain(&o.texts).map(Vec::len).sum::<usize>() + o.file.len();
            prop_assert!(shown <= total);
            prop_assert!(o.files <= 1);
        }
    }
}
