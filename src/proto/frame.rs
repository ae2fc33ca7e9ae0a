//! The 20-byte frame header of the Wazuh cluster protocol (PROTOCOL.md §1.2–§1.3).
//!
//! `counter` (u32 BE) ‖ `length` (u32 BE) ‖ 12-byte command field. The command field is the name, one
//! space, then `-` padding; its 12th byte doubles as the "divided" flag (`d` = more frames follow).

/// Size of the fixed header that precedes every payload.
pub const HEADER_BYTES: usize = 20;
/// Size of the command field inside the header.
pub const COMMAND_FIELD_BYTES: usize = 12;
/// Longest command name that fits the field (one byte is kept for the separating space).
pub const COMMAND_NAME_BYTES_MAX: usize = 11;
/// Plaintext size above which a message is divided into several frames; also the total size
/// (header included) of every non-final frame of a divided message.
pub const REQUEST_CHUNK_BYTES: usize = 5_242_880;

/// A decoded frame header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub counter: u32,
    pub length: u32,
    pub command: String,
    /// More frames of the same message follow.
    pub divided: bool,
}

/// Why a command name cannot be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandNameError {
    #[error("command name '{0}' is longer than 11 bytes")]
    TooLong(String),
    #[error("command name '{0}' contains a space or a non-ASCII byte")]
    BadByte(String),
}

/// Builds the 12-byte command field. `divided` marks a non-final frame of a divided message;
/// `final_of_divided` marks the last frame of one (whose 12th byte is always `-`).
pub fn command_field(
    name: &str,
    divided: bool,
    final_of_divided: bool,
) -> Result<[u8; COMMAND_FIELD_BYTES], CommandNameError> {
    let bytes = name.as_bytes();
    if bytes.len() > COMMAND_NAME_BYTES_MAX {
        return Err(CommandNameError::TooLong(name.to_string()));
    }
    if bytes.iter().any(|b| *b == b' ' || !b.is_ascii()) {
        return Err(CommandNameError::BadByte(name.to_string()));
    }
    let mut field = [b'-'; COMMAND_FIELD_BYTES];
    field[..bytes.len()].copy_from_slice(bytes);
    field[bytes.len()] = b' ';
    if divided {
        field[COMMAND_FIELD_BYTES - 1] = b'd';
    } else if final_of_divided {
        field[COMMAND_FIELD_BYTES - 1] = b'-';
    }
    Ok(field)
}

/// Builds the 12-byte field for a reply whose name carries a trailing space on the wire
/// (`"ok  --------"`, `"ok-m  ------"`), as stock Wazuh nodes send for `new_file` and `echo-c`.
pub fn command_field_with_trailing_space(
    name: &str,
) -> Result<[u8; COMMAND_FIELD_BYTES], CommandNameError> {
    let mut padded = command_field(name, false, false)?;
    if name.len() + 1 < COMMAND_FIELD_BYTES {
        padded[name.len() + 1] = b' ';
    }
    Ok(padded)
}

/// Encodes a header.
pub fn encode_header(
    counter: u32,
    length: u32,
    field: &[u8; COMMAND_FIELD_BYTES],
) -> [u8; HEADER_BYTES] {
    let mut out = [0u8; HEADER_BYTES];
    out[0..4].copy_from_slice(&counter.to_be_bytes());
    out[4..8].copy_from_slice(&length.to_be_bytes());
    out[8..20].copy_from_slice(field);
    out
}

/// Decodes a header. The name is the first 11 bytes cut at the first space; the divided flag is
/// the 12th byte being `d`. Padding is not validated, as in Wazuh.
pub fn decode_header(raw: &[u8; HEADER_BYTES]) -> Header {
    let counter = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
    let length = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]);
    let field = &raw[8..20];
    let name_part = &field[..COMMAND_NAME_BYTES_MAX];
    let end = name_part
        .iter()
        .position(|b| *b == b' ')
        .unwrap_or(COMMAND_NAME_BYTES_MAX);
    // Command names are ASCII: any other byte (which no command has) shows as `?`, so a name
    // stays within its 11 bytes and prints safely in logs and replies.
    let command = name_part[..end]
        .iter()
        .map(|b| {
            if b.is_ascii_graphic() {
                *b as char
            } else {
                '?'
            }
        })
        .collect();
    Header {
        counter,
        length,
        command,
        divided: field[COMMAND_FIELD_BYTES - 1] == b'd',
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, divided: bool, last: bool) -> String {
        String::from_utf8(command_field(name, divided, last).unwrap().to_vec()).unwrap()
    }

    /// Found by fuzzing (`fuzz/run.sh`, target `decoder`): non-UTF-8 bytes in the command field
    /// became 3-byte replacement characters, a name longer than the field.
    #[test]
    fn a_command_field_of_foreign_bytes_stays_within_its_bytes() {
        let mut raw = [0u8; HEADER_BYTES];
        raw[8..20].copy_from_slice(b"\x00\x01xh\xff\xff\xff\xff\xff\xffab");
        let header = decode_header(&raw);
        assert_eq!(header.command, "??xh??????a");
        assert!(header.command.len() <= COMMAND_NAME_BYTES_MAX);
    }

    #[test]
    fn command_fields_match_the_protocol_table() {
        let cases = [
            ("hello", "hello ------", "hello -----d"),
            ("ok", "ok ---------", "ok --------d"),
            ("err", "err --------", "err -------d"),
            ("echo-c", "echo-c -----", "echo-c ----d"),
            ("dapi_res", "dapi_res ---", "dapi_res --d"),
            ("syn_m_c_ok", "syn_m_c_ok -", "syn_m_c_ok d"),
            ("syn_i_w_m_p", "syn_i_w_m_p ", "syn_i_w_m_pd"),
            ("sendsyn_res", "sendsyn_res ", "sendsyn_resd"),
        ];
        for (name, normal, divided) in cases {
            assert_eq!(field(name, false, false), normal, "{name}");
            assert_eq!(field(name, true, false), divided, "{name}");
        }
        // The last frame of a divided message always ends in '-', even for 11-byte names.
        assert_eq!(field("syn_i_w_m_p", false, true), "syn_i_w_m_p-");
        assert_eq!(field("sendsyn_res", false, true), "sendsyn_res-");
        assert_eq!(field("hello", false, true), "hello ------");
    }

    #[test]
    fn trailing_space_replies_decode_to_plain_names() {
        let ok = command_field_with_trailing_space("ok").unwrap();
        assert_eq!(&ok, b"ok  --------");
        let okm = command_field_with_trailing_space("ok-m").unwrap();
        assert_eq!(&okm, b"ok-m  ------");
        assert_eq!(decode_header(&encode_header(1, 0, &ok)).command, "ok");
        assert_eq!(decode_header(&encode_header(1, 0, &okm)).command, "ok-m");
    }

    #[test]
    fn long_or_spaced_names_are_refused() {
        assert!(matches!(
            command_field("syn_i_w_m_pp", false, false),
            Err(CommandNameError::TooLong(_))
        ));
        assert!(matches!(
            command_field("a b", false, false),
            Err(CommandNameError::BadByte(_))
        ));
    }

    #[test]
    fn header_round_trips_and_reads_the_flag() {
        let f = command_field("syn_i_w_m_p", true, false).unwrap();
        let h = decode_header(&encode_header(0x4996_02d2, 120, &f));
        assert_eq!(
            h,
            Header {
                counter: 0x4996_02d2,
                length: 120,
                command: "syn_i_w_m_p".into(),
                divided: true
            }
        );
        // An 11-byte name with no space at all is taken whole.
        let mut raw = [b'x'; HEADER_BYTES];
        raw[..8].fill(0);
        assert_eq!(decode_header(&raw).command, "xxxxxxxxxxx");
    }
}
