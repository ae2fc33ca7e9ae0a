//! Push decoder: bytes in, complete (still encrypted) messages out, with hard limits
//! (PROTOCOL.md §1.6–§1.7). Divided messages are reassembled per counter before decryption.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use super::frame::{decode_header, Header, HEADER_BYTES};

/// Receive-side limits; the defaults are those of stock 4.14 nodes.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest `length` a frame header may announce.
    pub frame_bytes_max: usize,
    /// Largest message, whole in one frame or reassembled from divided ones.
    pub message_bytes_max: usize,
    /// Divided messages that may be partially received at once on one connection.
    pub divided_messages_max: usize,
    /// Time allowed for a frame's payload to arrive once its header was read.
    pub payload_timeout: Duration,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            frame_bytes_max: 268_435_456,
            message_bytes_max: 268_435_456,
            divided_messages_max: 10,
            payload_timeout: Duration::from_secs(30),
        }
    }
}

/// A complete message as received: payload not yet decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub counter: u32,
    pub command: String,
    pub payload: Bytes,
}

/// Input that breaks a limit; the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "a frame announced {announced} bytes, more than the {max} allowed (possible DoS attempt)"
    )]
    FrameTooLarge { announced: usize, max: usize },
    #[error("divided message {counter} grew to {bytes} bytes, more than the {max} allowed (possible DoS attempt)")]
    MessageTooLarge {
        counter: u32,
        bytes: usize,
        max: usize,
    },
    #[error("more than {max} divided messages are being received at once")]
    TooManyDivided { max: usize },
}

struct Partial {
    command: String,
    data: BytesMut,
}

/// Incremental frame decoder for one connection.
pub struct Decoder {
    limits: DecodeLimits,
    buf: BytesMut,
    /// Header read, payload not complete yet, and when that header was read.
    pending: Option<(Header, Instant)>,
    partial: HashMap<u32, Partial>,
}

impl Decoder {
    pub fn new(limits: DecodeLimits) -> Decoder {
        Decoder {
            limits,
            buf: BytesMut::new(),
            pending: None,
            partial: HashMap::new(),
        }
    }

    /// Appends received bytes and pushes every message they complete onto `out`.
    pub fn feed(
        &mut self,
        input: &[u8],
        now: Instant,
        out: &mut Vec<RawMessage>,
    ) -> Result<(), DecodeError> {
        self.buf.extend_from_slice(input);
        loop {
            if self.pending.is_none() {
                if self.buf.len() < HEADER_BYTES {
                    return Ok(());
                }
                let raw: [u8; HEADER_BYTES] = self.buf[..HEADER_BYTES]
                    .try_into()
                    .unwrap_or([0; HEADER_BYTES]);
                let header = decode_header(&raw);
                if header.length as usize > self.limits.frame_bytes_max {
                    return Err(DecodeError::FrameTooLarge {
                        announced: header.length as usize,
                        max: self.limits.frame_bytes_max,
                    });
                }
                self.buf.advance(HEADER_BYTES);
                self.pending = Some((header, now));
            }
            let need = self.pending.as_ref().map_or(0, |(h, _)| h.length as usize);
            if self.buf.len() < need {
                self.buf.reserve(need - self.buf.len());
                return Ok(());
            }
            let Some((header, _)) = self.pending.take() else {
                return Ok(());
            };
            let payload = self.buf.split_to(need).freeze();
            if let Some(message) = self.assemble(header, payload)? {
                out.push(message);
            }
        }
    }

    /// True when a frame's payload has been incomplete for longer than the limit allows.
    pub fn payload_overdue(&self, now: Instant) -> bool {
        self.pending.as_ref().is_some_and(|(_, since)| {
            now.saturating_duration_since(*since) > self.limits.payload_timeout
        })
    }

    /// Bytes held for messages not complete yet (for status and memory accounting).
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len() + self.partial.values().map(|p| p.data.len()).sum::<usize>()
    }

    fn assemble(
        &mut self,
        header: Header,
        payload: Bytes,
    ) -> Result<Option<RawMessage>, DecodeError> {
        let counter = header.counter;
        if header.divided {
            if !self.partial.contains_key(&counter)
                && self.partial.len() >= self.limits.divided_messages_max
            {
                return Err(DecodeError::TooManyDivided {
                    max: self.limits.divided_messages_max,
                });
            }
            let entry = self.partial.entry(counter).or_insert_with(|| Partial {
                command: header.command.clone(),
                data: BytesMut::new(),
            });
            let total = entry.data.len() + payload.len();
            if total > self.limits.message_bytes_max {
                self.partial.remove(&counter);
                return Err(DecodeError::MessageTooLarge {
                    counter,
                    bytes: total,
                    max: self.limits.message_bytes_max,
                });
            }
            entry.data.extend_from_slice(&payload);
            return Ok(None);
        }
        match self.partial.remove(&counter) {
            Some(mut partial) => {
                let total = partial.data.len() + payload.len();
                if total > self.limits.message_bytes_max {
                    return Err(DecodeError::MessageTooLarge {
                        counter,
                        bytes: total,
                        max: self.limits.message_bytes_max,
                    });
                }
                partial.data.extend_from_slice(&payload);
                Ok(Some(RawMessage {
                    counter,
                    command: partial.command,
                    payload: partial.data.freeze(),
                }))
            }
            // A whole message in one frame is bounded like a divided one.
            None if payload.len() > self.limits.message_bytes_max => {
                Err(DecodeError::MessageTooLarge {
                    counter,
                    bytes: payload.len(),
                    max: self.limits.message_bytes_max,
                })
            }
            None => Ok(Some(RawMessage {
                counter,
                command: header.command,
                payload,
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::crypto::Cipher;
    use crate::proto::encoder::encode_message;
    use crate::proto::frame::{command_field, encode_header};

    fn frame(counter: u32, name: &str, divided: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = encode_header(
            counter,
            payload.len() as u32,
            &command_field(name, divided, false).unwrap(),
        )
        .to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn decodes_byte_by_byte() {
        let mut d = Decoder::new(DecodeLimits::default());
        let mut wire = frame(1, "echo", false, b"hi");
        wire.extend(frame(2, "ok", false, b""));
        let mut out = Vec::new();
        let now = Instant::now();
        for b in &wire {
            d.feed(std::slice::from_ref(b), now, &mut out).unwrap();
        }
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0],
            RawMessage {
                counter: 1,
                command: "echo".into(),
                payload: Bytes::from_static(b"hi")
            }
        );
        assert_eq!(out[1].command, "ok");
        assert_eq!(d.buffered_bytes(), 0);
    }

    #[test]
    fn interleaved_divided_messages_are_reassembled_per_counter() {
        let mut d = Decoder::new(DecodeLimits::default());
        let mut out = Vec::new();
        let now = Instant::now();
        let mut wire = frame(5, "dapi", true, b"aa");
        wire.extend(frame(6, "dapi", true, b"xx"));
        wire.extend(frame(9, "echo", false, b"single"));
        wire.extend(frame(5, "dapi", false, b"bb"));
        wire.extend(frame(6, "dapi", false, b"yy"));
        d.feed(&wire, now, &mut out).unwrap();
        let got: Vec<_> = out.iter().map(|m| (m.counter, m.payload.clone())).collect();
        assert_eq!(
            got,
            vec![
                (9, Bytes::from("single")),
                (5, Bytes::from("aabb")),
                (6, Bytes::from("xxyy"))
            ]
        );
    }

    #[test]
    fn limits_are_enforced() {
        let limits = DecodeLimits {
            frame_bytes_max: 10,
            message_bytes_max: 15,
            divided_messages_max: 2,
            ..Default::default()
        };
        let now = Instant::now();
        let mut out = Vec::new();
        let mut d = Decoder::new(limits);
        assert!(matches!(
            d.feed(&frame(1, "x", false, &[0; 11]), now, &mut out),
            Err(DecodeError::FrameTooLarge { .. })
        ));
        let mut d = Decoder::new(limits);
        let mut wire = frame(1, "x", true, &[0; 10]);
        wire.extend(frame(1, "x", true, &[0; 10]));
        assert!(matches!(
            d.feed(&wire, now, &mut out),
            Err(DecodeError::MessageTooLarge { .. })
        ));
        let mut d = Decoder::new(limits);
        let mut wire = frame(1, "x", true, b"a");
        wire.extend(frame(2, "x", true, b"a"));
        wire.extend(frame(3, "x", true, b"a"));
        assert_eq!(
            d.feed(&wire, now, &mut out),
            Err(DecodeError::TooManyDivided { max: 2 })
        );
    }

    /// Found by fuzzing (`fuzz/run.sh`, target `decoder`): a message in a single frame was
    /// bounded by the frame limit only, not by the message limit.
    #[test]
    fn a_single_frame_message_is_bounded_by_the_message_limit() {
        let limits = DecodeLimits {
            frame_bytes_max: 100,
            message_bytes_max: 15,
            ..Default::default()
        };
        let mut out = Vec::new();
        let mut d = Decoder::new(limits);
        assert!(matches!(
            d.feed(&frame(1, "x", false, &[0; 16]), Instant::now(), &mut out),
            Err(DecodeError::MessageTooLarge { bytes: 16, .. })
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn incomplete_payload_becomes_overdue() {
        let mut d = Decoder::new(DecodeLimits::default());
        let t0 = Instant::now();
        let wire = frame(1, "echo", false, b"abcdef");
        d.feed(&wire[..22], t0, &mut Vec::new()).unwrap();
        assert!(!d.payload_overdue(t0 + Duration::from_secs(30)));
        assert!(d.payload_overdue(t0 + Duration::from_secs(31)));
    }

    fn round_trip(len: usize) {
        let cipher = Cipher::from_cluster_key("c98b62a9b6169ac5f67dae55ae4a9088").unwrap();
        let plaintext: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let frames = encode_message(
            42,
            "str_upd",
            &plaintext,
            &cipher,
            crate::proto::frame::REQUEST_CHUNK_BYTES,
        )
        .unwrap();
        assert!(frames.len() > 1);
        let mut d = Decoder::new(DecodeLimits::default());
        let mut out = Vec::new();
        for f in &frames {
            d.feed(f, Instant::now(), &mut out).unwrap();
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].command, "str_upd");
        assert_eq!(cipher.decrypt(&out[0].payload).unwrap(), plaintext);
    }

    #[test]
    fn divided_round_trip_just_over_one_chunk() {
        round_trip(5_242_880 + 1);
    }

    #[test]
    fn divided_round_trip_50_mib() {
        round_trip(50 * 1024 * 1024);
    }
}
