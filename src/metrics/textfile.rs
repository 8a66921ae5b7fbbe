//! The metrics as a file for node_exporter's textfile collector: for `--once` in
//! cron, where nothing stays up to be scraped.

use std::path::Path;

use crate::sink::{self, Owner, SinkError, Wanted};

/// Writes `text` to `path` atomically (node_exporter must never read half a file).
pub fn write(path: &Path, text: &str) -> Result<(), SinkError> {
    let (dir, name) = match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
        (Some(dir), Some(name)) => (
            if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            },
            name,
        ),
        _ => {
            return Err(SinkError::Io {
                action: "write the textfile",
                path: path.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"),
            })
        }
    };
    let wanted = [Wanted {
        name,
        content: text.as_bytes(),
        mode: 0o644,
    }];
    sink::apply(&sink::plan(dir, &wanted, Owner::default())?)
}
