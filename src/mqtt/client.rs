//! One MQTT client over either protocol version. The console speaks MQTT 5
//! first (a command's response topic and correlation data need it) and falls
//! back to 3.1.1 for brokers that only speak that (NATS's MQTT gateway, old
//! brokers); once 3.1.1 is accepted it stays for the run.

use bytes::Bytes;
use rumqttc::v5;
use rumqttc::{LastWill, QoS};

use super::MqttSpec;

/// The protocol version a connection attempt uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V5,
    V311,
}

impl Version {
    pub fn label(self) -> &'static str {
        match self {
            Version::V5 => "MQTT 5",
            Version::V311 => "MQTT 3.1.1",
        }
    }
}

/// What polling the connection brought, the same for both versions.
#[derive(Debug)]
pub enum Polled {
    ConnAck,
    Message(Incoming),
    /// Our own DISCONNECT went out.
    Disconnected,
    Other,
    /// The connection failed. `answered`: something that spoke back was there
    /// (a refusal or a packet we could not read, not a closed port or a timeout),
    /// so another protocol version may do better.
    Failed {
        why: String,
        answered: bool,
    },
}

/// A message from a subscription.
#[derive(Debug)]
pub struct Incoming {
    pub topic: String,
    pub payload: Bytes,
    /// MQTT 5: where the sender wants the answer, and what to answer with.
    pub response_topic: Option<String>,
    pub correlation: Option<Bytes>,
}

pub enum Client {
    V5(v5::AsyncClient, Box<v5::EventLoop>),
    V311(rumqttc::AsyncClient, Box<rumqttc::EventLoop>),
}

impl Client {
    /// A client for `spec` (not connected until polled), with a retained last will.
    pub fn new(
        spec: &MqttSpec,
        version: Version,
        client_id: String,
        will: Option<(String, &'static str)>,
        queue: usize,
    ) -> Result<Client, String> {
        Ok(match version {
            Version::V311 => {
                let mut options = spec.options(client_id)?;
                if let Some((topic, payload)) = will {
                    options.set_last_will(LastWill::new(topic, payload, QoS::AtLeastOnce, true));
                }
                let (client, events) = rumqttc::AsyncClient::new(options, queue);
                Client::V311(client, Box::new(events))
            }
            Version::V5 => {
                let mut options = v5::MqttOptions::new(client_id, spec.host.clone(), spec.port);
                options.set_keep_alive(super::KEEP_ALIVE);
                options.set_max_packet_size(Some(super::MAX_PACKET));
                if let Some(user) = &spec.user {
                    options.set_credentials(user.clone(), spec.password.clone().unwrap_or_default());
                }
                if let Some(transport) = spec.transport()? {
                    options.set_transport(transport);
                }
                if let Some((topic, payload)) = will {
                    options.set_last_will(v5::mqttbytes::v5::LastWill::new(
                        topic,
                        payload,
                        v5::mqttbytes::QoS::AtLeastOnce,
                        true,
                        None,
                    ));
                }
                let (client, events) = v5::AsyncClient::new(options, queue);
                Client::V5(client, Box::new(events))
            }
        })
    }

    pub fn version(&self) -> Version {
        match self {
            Client::V5(..) => Version::V5,
            Client::V311(..) => Version::V311,
        }
    }

    pub async fn poll(&mut self) -> Polled {
        match self {
            Client::V311(_, events) => match events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => Polled::ConnAck,
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => Polled::Message(Incoming {
                    topic: p.topic,
                    payload: p.payload,
                    response_topic: None,
                    correlation: None,
                }),
                Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) => Polled::Disconnected,
                Ok(_) => Polled::Other,
                Err(e) => Polled::Failed {
                    answered: v311_answered(&e),
                    why: e.to_string(),
                },
            },
            Client::V5(_, events) => match events.poll().await {
                Ok(v5::Event::Incoming(v5::Incoming::ConnAck(_))) => Polled::ConnAck,
                Ok(v5::Event::Incoming(v5::Incoming::Publish(p))) => {
                    let (response_topic, correlation) = match p.properties {
                        Some(props) => (props.response_topic, props.correlation_data),
                        None => (None, None),
                    };
                    Polled::Message(Incoming {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload,
                        response_topic,
                        correlation,
                    })
                }
                Ok(v5::Event::Outgoing(rumqttc::Outgoing::Disconnect)) => Polled::Disconnected,
                Ok(_) => Polled::Other,
                Err(e) => Polled::Failed {
                    answered: v5_answered(&e),
                    why: e.to_string(),
                },
            },
        }
    }

    /// Hands a QoS 1 message to the client's queue; false when the queue is full.
    /// `correlation`: MQTT 5 correlation data (dropped on 3.1.1, which has none).
    pub fn try_publish(
        &self,
        topic: &str,
        payload: &[u8],
        retain: bool,
        correlation: Option<&Bytes>,
    ) -> bool {
        match self {
            Client::V311(c, _) => c
                .try_publish(topic, QoS::AtLeastOnce, retain, payload.to_vec())
                .is_ok(),
            Client::V5(c, _) => {
                let qos = v5::mqttbytes::QoS::AtLeastOnce;
                match correlation.cloned() {
                    Some(data) => {
                        let properties = v5::mqttbytes::v5::PublishProperties {
                            correlation_data: Some(data),
                            ..Default::default()
                        };
                        c.try_publish_with_properties(topic, qos, retain, payload.to_vec(), properties)
                            .is_ok()
                    }
                    None => c.try_publish(topic, qos, retain, payload.to_vec()).is_ok(),
                }
            }
        }
    }

    pub fn try_subscribe(&self, filter: &str) -> bool {
        match self {
            Client::V311(c, _) => c.try_subscribe(filter, QoS::AtLeastOnce).is_ok(),
            Client::V5(c, _) => c.try_subscribe(filter, v5::mqttbytes::QoS::AtLeastOnce).is_ok(),
        }
    }

    pub fn try_disconnect(&self) -> bool {
        match self {
            Client::V311(c, _) => c.try_disconnect().is_ok(),
            Client::V5(c, _) => c.try_disconnect().is_ok(),
        }
    }
}

/// Nobody there (closed port, unreachable, timeout, TLS) says nothing about the
/// protocol version; anything else came from a broker that did not take ours.
fn io_is_network(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | TimedOut | NotFound | HostUnreachable | NetworkUnreachable | AddrNotAvailable
    )
}

fn v5_answered(e: &v5::ConnectionError) -> bool {
    use v5::ConnectionError::*;
    match e {
        Io(io) => !io_is_network(io),
        Timeout(_) | Tls(_) | RequestsDone => false,
        // Refused for its credentials is not about the version; any other refusal may be.
        ConnectionRefused(code) => !matches!(
            code,
            v5::mqttbytes::v5::ConnectReturnCode::BadUserNamePassword
                | v5::mqttbytes::v5::ConnectReturnCode::NotAuthorized
                | v5::mqttbytes::v5::ConnectReturnCode::Banned
        ),
        _ => true,
    }
}

fn v311_answered(e: &rumqttc::ConnectionError) -> bool {
    use rumqttc::ConnectionError::*;
    match e {
        Io(io) => !io_is_network(io),
        Tls(_) | RequestsDone | NetworkTimeout | FlushTimeout => false,
        ConnectionRefused(code) => matches!(code, rumqttc::ConnectReturnCode::RefusedProtocolVersion),
        _ => true,
    }
}
