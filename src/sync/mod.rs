//! Pure domain logic of the integrity sync: file metadata, classification of differences, package and
//! merged-file formats. No sockets, no runtime; formats work on `Read`/`Write` streams.

pub mod metadata;

pub use metadata::{FileMeta, HashKind, Metadata, MetadataError};
