//! Generic connection layer (`clusterd::proto::connection::Connection::receive`): encrypted
//! messages built with the crate's encoder carry long strings (`new_str`, `str_upd`, `err_str`),
//! the file protocol (`new_file`, `file_upd`, `file_end`), `cancel_task`, `echo`, replies to our
//! own requests, and raw bytes. Small limits bound what one input can make it hold. Where received
//! files may be written is checked on whole nodes (the node targets).
#![no_main]

use std::time::{Duration, Instant};

use clusterd::proto::connection::{Connection, Event};
use clusterd::proto::crypto::Cipher;
use clusterd::proto::encoder::encode_message;
use fuzz_common::{command, small_limits, Cursor, KEY};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let cipher = Cipher::from_cluster_key(KEY).expect("key");
    let mut conn: Connection<u32> = Connection::new(cipher.clone(), small_limits(), 1);
    let mut t = Instant::now();
    if c.u8() & 1 == 0 {
        conn.confine_received_files("queue/cluster/worker1/");
    }
    let mut counter = 0u32;
    let mut ours: Vec<u32> = Vec::new();
    let mut ops = 0;
    while !c.is_empty() && ops < 256 {
        ops += 1;
        let op = c.u8();
        let mut events = Vec::new();
        let result = match op % 8 {
            0..=3 => {
                counter = counter.wrapping_add(1);
                let cmd = command(&mut c);
                let payload = c.chunk();
                let chunk = if op % 8 == 3 { 64 + c.u8() as usize * 8 } else { usize::MAX };
                match encode_message(counter, &cmd, payload, &cipher, chunk) {
                    Ok(frames) => frames
                        .iter()
                        .try_for_each(|f| conn.receive(f, t, &mut events)),
                    Err(_) => Ok(()),
                }
            }
            4 => {
                let payload = c.chunk();
                match conn.request("echo", payload, ops, t, Duration::from_secs(5)) {
                    Ok(n) => ours.push(n),
                    Err(_) => {}
                }
                Ok(())
            }
            5 => {
                let Some(n) = ours.pop() else { continue };
                let cmd = command(&mut c);
                let payload = c.chunk();
                match encode_message(n, &cmd, payload, &cipher, usize::MAX) {
                    Ok(frames) => frames.iter().try_for_each(|f| conn.receive(f, t, &mut events)),
                    Err(_) => Ok(()),
                }
            }
            6 => {
                let bytes = c.chunk();
                conn.receive(bytes, t, &mut events)
            }
            _ => {
                t += Duration::from_secs((c.u8() % 64) as u64);
                let _ = conn.expire(t);
                let id = String::from_utf8_lossy(c.chunk()).into_owned();
                let _ = conn.take_string(&id);
                let _ = conn.take_received_file(&id);
                let _ = conn.is_interrupted(&id);
                Ok(())
            }
        };
        for e in events {
            if let Event::Request { payload, .. } = e {
                assert!(payload.len() <= small_limits().decode.message_bytes_max);
            }
        }
        let _ = conn.take_outbox();
        if result.is_err() {
            break;
        }
    }
    let _ = conn.abandon_requests();
});
