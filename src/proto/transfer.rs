//! Send side of the file protocol (PROTOCOL.md §2.6), IO-free: the sender says which chunk it needs
//! (`Step::Read`), the caller reads it from disk and hands it back, the sender wraps it in `file_upd`,
//! hashes it, and closes with `file_end` and the SHA-256 digest. Each message waits for the peer's
//! reply; as stock nodes do, the reply's content does not stop the transfer, a cancellation does.

use sha2::{Digest, Sha256};

#[cfg(test)]
use super::frame::REQUEST_CHUNK_BYTES;

/// What the sender needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this request and wait for its reply.
    Request {
        command: &'static str,
        payload: Vec<u8>,
    },
    /// Read `len` bytes at `offset` of the file and call [`OutgoingFile::chunk_read`].
    Read { offset: u64, len: usize },
    /// The transfer is over (`file_end` answered).
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitNewFileReply,
    AwaitRead,
    AwaitUpdReply,
    AwaitEndReply,
    Done,
}

/// One file being sent.
#[derive(Debug)]
pub struct OutgoingFile {
    /// Path relative to the install root, e.g. `queue/cluster/worker1/worker1-....zip`.
    pub rel: String,
    size: u64,
    sent: u64,
    hasher: Sha256,
    state: State,
    chunk: usize,
    /// Bytes asked for by the last `Step::Read`.
    requested: usize,
}

impl OutgoingFile {
    /// Bytes of the whole file.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Starts a transfer of a file of `size` bytes; returns the `new_file` request to send.
    /// `frame_bytes` is the connection's message size (`ConnLimits::chunk_bytes`, stock
    /// [`crate::proto::frame::REQUEST_CHUNK_BYTES`]): each `file_upd` fills one message, path and space included.
    pub fn start(rel: &str, size: u64, frame_bytes: usize) -> (OutgoingFile, Step) {
        let wire = format!("/{rel}");
        let chunk = frame_bytes.saturating_sub(wire.len() + 1).max(1);
        let file = OutgoingFile {
            rel: rel.to_string(),
            size,
            sent: 0,
            hasher: Sha256::new(),
            state: State::AwaitNewFileReply,
            chunk,
            requested: 0,
        };
        (
            file,
            Step::Request {
                command: "new_file",
                payload: wire.into_bytes(),
            },
        )
    }

    fn wire_prefix(&self) -> Vec<u8> {
        format!("/{} ", self.rel).into_bytes()
    }

    pub fn bytes_sent(&self) -> u64 {
        self.sent
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The peer answered the last request (whatever the answer). `cancelled`: the peer cancelled the
    /// task this file belongs to, so the transfer closes at once.
    pub fn replied(&mut self, cancelled: bool) -> Step {
        match self.state {
            State::AwaitNewFileReply | State::AwaitUpdReply => {
                if cancelled || self.sent >= self.size {
                    return self.end();
                }
                self.state = State::AwaitRead;
                self.requested = (self.size - self.sent).min(self.chunk as u64) as usize;
                Step::Read {
                    offset: self.sent,
                    len: self.requested,
                }
            }
            State::AwaitEndReply | State::Done => {
                self.state = State::Done;
                Step::Done
            }
            State::AwaitRead => Step::Read {
                offset: self.sent,
                len: self.requested,
            },
        }
    }

    /// The chunk asked for was read. A short or empty read (the file shrank) ends the transfer; the
    /// digest then covers what was sent, and the receiver's check decides.
    pub fn chunk_read(&mut self, data: &[u8]) -> Step {
        if self.state != State::AwaitRead {
            return Step::Done;
        }
        if data.is_empty() {
            return self.end();
        }
        self.hasher.update(data);
        self.sent += data.len() as u64;
        if data.len() < self.requested {
            self.size = self.sent;
        }
        self.state = State::AwaitUpdReply;
        let mut payload = self.wire_prefix();
        payload.extend_from_slice(data);
        Step::Request {
            command: "file_upd",
            payload,
        }
    }

    fn end(&mut self) -> Step {
        self.state = State::AwaitEndReply;
        let mut payload = self.wire_prefix();
        payload.extend_from_slice(&self.hasher.clone().finalize());
        Step::Request {
            command: "file_end",
            payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::files::IncomingFiles;

    /// Drives a sender against a receiver, as two peers would.
    fn transfer(
        content: &[u8],
        cancel_after_chunks: Option<usize>,
    ) -> (Vec<u8>, Result<(), crate::proto::files::FileError>) {
        let mut receiver = IncomingFiles::new(Default::default());
        let now = std::time::Instant::now();
        let (mut sender, mut step) = OutgoingFile::start(
            "queue/cluster/w1/p.zip",
            content.len() as u64,
            REQUEST_CHUNK_BYTES,
        );
        let mut chunks = 0;
        let mut end_result = Ok(());
        loop {
            step = match step {
                Step::Request { command, payload } => {
                    match command {
                        "new_file" => receiver.open(&payload, now).unwrap(),
                        "file_upd" => {
                            chunks += 1;
                            receiver.update(&payload, now).unwrap()
                        }
                        _ => end_result = receiver.end(&payload, now),
                    }
                    sender.replied(cancel_after_chunks == Some(chunks))
                }
                Step::Read { offset, len } => {
                    sender.chunk_read(&content[offset as usize..offset as usize + len])
                }
                Step::Done => break,
            };
        }
        let written: Vec<u8> = receiver
            .take_ops()
            .into_iter()
            .flat_map(|op| match op {
                crate::proto::files::FileOp::Write(w) => w.data,
                crate::proto::files::FileOp::Remove { .. } => Vec::new(),
            })
            .collect();
        (written, end_result)
    }

    #[test]
    fn files_of_every_size_arrive_intact() {
        for len in [
            0usize,
            1,
            REQUEST_CHUNK_BYTES - 30,
            REQUEST_CHUNK_BYTES,
            3 * REQUEST_CHUNK_BYTES + 5,
        ] {
            let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let (written, end) = transfer(&content, None);
            assert_eq!(written, content, "len {len}");
            assert_eq!(end, Ok(()), "len {len}");
        }
    }

    #[test]
    fn full_chunks_are_exactly_one_frame_of_plaintext() {
        let (mut s, _) =
            OutgoingFile::start("queue/cluster/w1/p.zip", 20_000_000, REQUEST_CHUNK_BYTES);
        let Step::Read { len, .. } = s.replied(false) else {
            panic!()
        };
        let Step::Request { payload, .. } = s.chunk_read(&vec![0; len]) else {
            panic!()
        };
        assert_eq!(payload.len(), REQUEST_CHUNK_BYTES);
    }

    #[test]
    fn a_cancelled_transfer_ends_with_the_digest_of_what_was_sent() {
        let content = vec![7u8; 3 * REQUEST_CHUNK_BYTES];
        let (written, end) = transfer(&content, Some(1));
        assert!(written.len() < content.len());
        assert_eq!(end, Ok(()));
    }
}
