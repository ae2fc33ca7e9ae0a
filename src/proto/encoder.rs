//! Turns one message into frames (PROTOCOL.md §1.6): encrypt the whole payload first, then cut the
//! token into frames when the plaintext is larger than the chunk size.

use bytes::{BufMut, Bytes, BytesMut};

use super::crypto::Cipher;
use super::frame::{
    command_field, command_field_with_trailing_space, encode_header, CommandNameError, HEADER_BYTES,
};

/// Encodes a message as the frames to write, in order.
///
/// A `command` ending with a space (`"ok "`, `"ok-m "`) is put on the wire with that extra space,
/// as stock nodes answer `new_file` and `echo-c`. `chunk_bytes` is the plaintext size above which
/// the message is divided; non-final frames then total exactly `chunk_bytes` with their header.
pub fn encode_message(
    counter: u32,
    command: &str,
    plaintext: &[u8],
    cipher: &Cipher,
    chunk_bytes: usize,
) -> Result<Vec<Bytes>, CommandNameError> {
    let (name, trailing_space) = match command.strip_suffix(' ') {
        Some(stripped) => (stripped, true),
        None => (command, false),
    };
    let token = cipher.encrypt(plaintext);
    if plaintext.len() <= chunk_bytes {
        let field = if trailing_space {
            command_field_with_trailing_space(name)?
        } else {
            command_field(name, false, false)?
        };
        return Ok(vec![frame(counter, &field, &token)]);
    }
    let piece_bytes = chunk_bytes - HEADER_BYTES;
    let middle = command_field(name, true, false)?;
    let last = command_field(name, false, true)?;
    let pieces: Vec<&[u8]> = token.chunks(piece_bytes).collect();
    let count = pieces.len();
    Ok(pieces
        .into_iter()
        .enumerate()
        .map(|(i, piece)| frame(counter, if i + 1 == count { &last } else { &middle }, piece))
        .collect())
}

fn frame(counter: u32, field: &[u8; 12], payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_BYTES + payload.len());
    // Payloads are bounded far below 4 GiB by the chunking above and the receive limits.
    out.put_slice(&encode_header(counter, payload.len() as u32, field));
    out.put_slice(payload);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::{decode_header, REQUEST_CHUNK_BYTES};

    fn header_of(frame: &Bytes) -> crate::proto::frame::Header {
        decode_header(frame[..HEADER_BYTES].try_into().unwrap())
    }

    #[test]
    fn small_messages_are_one_frame() {
        let frames =
            encode_message(7, "echo", b"abc", &Cipher::Plain, REQUEST_CHUNK_BYTES).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(
            &frames[0][..],
            b"\x00\x00\x00\x07\x00\x00\x00\x03echo -------abc"
        );
    }

    #[test]
    fn the_protocol_division_example() {
        // 6,000,000 plaintext bytes give an 8,000,100-byte token: 5,242,860 + 2,757,240.
        let cipher = Cipher::from_cluster_key("c98b62a9b6169ac5f67dae55ae4a9088").unwrap();
        let frames = encode_message(
            9,
            "dapi_res",
            &vec![0u8; 6_000_000],
            &cipher,
            REQUEST_CHUNK_BYTES,
        )
        .unwrap();
        assert_eq!(frames.len(), 2);
        let (a, b) = (header_of(&frames[0]), header_of(&frames[1]));
        assert_eq!((a.length, a.divided, a.counter), (5_242_860, true, 9));
        assert_eq!((b.length, b.divided, b.counter), (2_757_240, false, 9));
        assert_eq!(frames[0].len(), REQUEST_CHUNK_BYTES);
        assert_eq!(&frames[0][8..20], b"dapi_res --d");
        assert_eq!(&frames[1][8..20], b"dapi_res ---");
    }

    #[test]
    fn plaintext_of_exactly_one_chunk_is_not_divided() {
        let frames = encode_message(1, "str_upd", &vec![1u8; 1000], &Cipher::Plain, 1000).unwrap();
        assert_eq!(frames.len(), 1);
        let frames = encode_message(1, "str_upd", &vec![1u8; 1001], &Cipher::Plain, 1000).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].len(), 1000);
        assert_eq!(header_of(&frames[1]).length, 21);
    }

    #[test]
    fn trailing_space_reply_names() {
        let frames =
            encode_message(3, "ok ", b"Ready to receive new file", &Cipher::Plain, 100).unwrap();
        assert_eq!(&frames[0][8..20], b"ok  --------");
    }
}
