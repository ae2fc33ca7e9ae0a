//! Speed of the wire codec, against a baseline measured in the same run.
//!
//! For each payload size (1 KiB, 1 MiB, and 8 MiB, which is divided into frames) the group `codec`
//! measures encoding and decoding, plain and Fernet, next to two baselines over the same bytes: a
//! plain copy (`to_vec`) and SHA-256. Only ratios between these figures mean anything on a shared
//! machine; `perf/codec_ratios.sh` runs this benchmark and prints them.
//!
//! Run with `cargo bench --bench codec`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sha2::{Digest, Sha256};

use clusterd::proto::crypto::Cipher;
use clusterd::proto::decoder::{DecodeLimits, Decoder, RawMessage};
use clusterd::proto::encoder::encode_message;
use clusterd::proto::frame::REQUEST_CHUNK_BYTES;

/// The key of the demo and test clusters.
const CLUSTER_KEY: &str = "c98b62a9b6169ac5f67dae55ae4a9088";

/// A command name of the usual length (8 of the 11 characters allowed).
const COMMAND: &str = "sendsync";

/// Payload sizes and the labels used in benchmark ids (and so in `target/criterion/` paths).
const SIZES: [(&str, usize); 3] = [
    ("1KiB", 1024),
    ("1MiB", 1024 * 1024),
    ("8MiB", 8 * 1024 * 1024),
];

/// Deterministic bytes that do not repeat over short periods (xorshift64).
fn payload(bytes: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Frames of one message, as a sender puts them on the wire.
fn encode(plaintext: &[u8], cipher: &Cipher) -> Vec<bytes::Bytes> {
    encode_message(1, COMMAND, plaintext, cipher, REQUEST_CHUNK_BYTES)
        .expect("the benchmark's command name is valid")
}

/// Feeds the frames to a fresh decoder and decrypts the one message they hold.
fn decode(frames: &[bytes::Bytes], cipher: &Cipher) -> Vec<u8> {
    let mut decoder = Decoder::new(DecodeLimits::default());
    let mut out: Vec<RawMessage> = Vec::with_capacity(1);
    let now = Instant::now();
    for frame in frames {
        decoder
            .feed(frame, now, &mut out)
            .expect("frames made by the encoder are within the limits");
    }
    let message = out.pop().expect("the frames complete one message");
    cipher
        .decrypt(&message.payload)
        .expect("the token was made with the same key")
}

fn codec(c: &mut Criterion) {
    let fernet = Cipher::from_cluster_key(CLUSTER_KEY).expect("the demo key is 32 bytes");
    let ciphers = [("plain", Cipher::Plain), ("fernet", fernet)];

    let mut group = c.benchmark_group("codec");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    for (label, bytes) in SIZES {
        let plaintext = payload(bytes);
        group.throughput(Throughput::Bytes(bytes as u64));

        group.bench_with_input(BenchmarkId::new("memcpy", label), &plaintext, |b, p| {
            b.iter(|| black_box(p.as_slice()).to_vec())
        });
        group.bench_with_input(BenchmarkId::new("sha256", label), &plaintext, |b, p| {
            b.iter(|| Sha256::digest(black_box(p.as_slice())))
        });

        for (name, cipher) in &ciphers {
            group.bench_with_input(
                BenchmarkId::new(format!("encode_{name}"), label),
                &plaintext,
                |b, p| b.iter(|| encode(black_box(p), cipher)),
            );

            let frames = encode(&plaintext, cipher);
            assert_eq!(decode(&frames, cipher), plaintext, "round trip");
            group.bench_with_input(
                BenchmarkId::new(format!("decode_{name}"), label),
                &frames,
                |b, f| b.iter(|| decode(black_box(f), cipher)),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
