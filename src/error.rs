//! Rendering an error with its causes, once, where it leaves the program: a log line,
//! a `/healthz` reason, or the message before an exit code.
//!
//! Every error type in certsync names what failed in its own message and keeps the
//! underlying error as its `source()`; none repeats its source's text. So the full story
//! is the chain, joined with ": ", and nothing has to be trimmed or deduplicated.

use std::error::Error;
use std::fmt;

/// Displays an error followed by each of its sources: `a: b: c`.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

/// `Chain(e).to_string()`, for places that keep the text (health, metrics).
pub fn chain(e: &(dyn Error + 'static)) -> String {
    Chain(e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot write {0}")]
    struct Outer(&'static str, #[source] std::io::Error);

    #[test]
    fn each_cause_appears_once_in_order() {
        let e = Outer("/o/privkey.pem", std::io::Error::other("disk full"));
        assert_eq!(chain(&e), "cannot write /o/privkey.pem: disk full");
    }
}
