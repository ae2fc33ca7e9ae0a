//! Counting the agents of a `client.keys` file, to notice a master about to wipe a worker's agents.
//!
//! The format, as Wazuh's key store reads it: one agent per line, `<id> <name> <ip> <key>` separated by
//! single spaces. Lines starting with `#` or a space are ignored; a name starting with `!` or `#` marks
//! an agent that was removed but whose id stays reserved.

use std::collections::BTreeSet;
use std::io::{self, BufRead};

/// Agents declared in a `client.keys` stream (removed agents and malformed lines not counted).
pub(crate) fn count_agents(reader: impl BufRead) -> io::Result<usize> {
    let mut agents = 0;
    for line in reader.split(b'\n') {
        if is_agent(&line?) {
            agents += 1;
        }
    }
    Ok(agents)
}

/// The ids of the agents declared in a `client.keys` content (removed agents and malformed lines
/// left out).
pub(crate) fn agent_ids(content: &[u8]) -> BTreeSet<u32> {
    content
        .split(|b| *b == b'\n')
        .filter(|line| is_agent(line))
        .filter_map(|line| {
            let id = line.split(|b| *b == b' ').next()?;
            std::str::from_utf8(id).ok()?.parse().ok()
        })
        .collect()
}

fn is_agent(line: &[u8]) -> bool {
    if matches!(line.first(), None | Some(b'#' | b' ')) {
        return false;
    }
    let mut fields = line.splitn(4, |b| *b == b' ');
    let (Some(id), Some(name), Some(_ip), Some(_key)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return false;
    };
    id.iter().all(u8::is_ascii_digit) && !matches!(name.first(), None | Some(b'!' | b'#'))
}

/// Whether replacing a file of `current` agents by one of `new` agents loses more than half of them.
pub(crate) fn is_drastic_shrink(current: usize, new: usize) -> bool {
    new.saturating_mul(2) < current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_live_agents_count() {
        let keys = b"001 agent1 any 1111\n\
                     002 !agent2 any 2222\n\
                     003 #agent3 10.0.0.3 3333\n\
                     # a comment\n\
                     \x20004 indented any 4444\n\
                     \n\
                     005 agent5 10.0.0.5/32 5555\n\
                     abc agent6 any 6666\n\
                     007 agent7 any\n\
                     008 agent8 any 8888";
        assert_eq!(count_agents(&keys[..]).unwrap(), 2 + 1);
        assert_eq!(count_agents(&b""[..]).unwrap(), 0);
        assert_eq!(agent_ids(keys), BTreeSet::from([1, 5, 8]));
        assert_eq!(
            agent_ids(b"99999999999 big any k\n010 a any k\r\n"),
            BTreeSet::from([10])
        );
    }

    #[test]
    fn shrink_rule() {
        assert!(is_drastic_shrink(100, 49));
        assert!(!is_drastic_shrink(100, 50));
        assert!(!is_drastic_shrink(0, 0));
        assert!(is_drastic_shrink(1, 0));
        assert!(!is_drastic_shrink(10, 400));
    }
}
