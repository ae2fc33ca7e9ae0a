//! Pure domain logic of the integrity sync: file metadata, classification of differences, package and
//! merged-file formats. No sockets, no runtime; formats work on `Read`/`Write` streams.

pub mod classify;
pub mod merged;
pub mod metadata;
pub mod package;
pub mod paths;
pub mod pyjson;

pub use classify::{classify, Classification, ClassifyError, Counts};
pub use merged::{MergedError, MergedLimits, MergedReader, MergedRecord, MergedWriter};
pub use metadata::{FileMeta, HashKind, Metadata, MetadataError};
pub use package::{AddOutcome, PackageError, PackageOutput, PackageSink, UnpackLimits, Unpacked};
pub use paths::{item_for, safe_relative, PathError};
