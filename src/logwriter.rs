//! stderr for the log, with control characters from input made visible.
//!
//! Log fields carry names from acme.json, certificates and file systems. A name holding
//! a newline or a carriage return would start a forged log line; an escape sequence
//! would rewrite the operator's terminal. Every event is written in one piece, so the
//! one newline that ends it is kept and every other control character is escaped
//! (`\n`, `\r`, `\x1b`...). With colours on, the formatter's own colour sequences pass.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// A [`MakeWriter`] for stderr that escapes control characters within each event.
#[derive(Debug, Clone, Copy)]
pub struct EscapingStderr {
    /// Let SGR colour sequences (`ESC [ digits ; m`) through: the text formatter writes
    /// them when stderr is a terminal. A forged one can only change a colour.
    pub ansi: bool,
}

impl<'a> MakeWriter<'a> for EscapingStderr {
    type Writer = Escaping<io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        Escaping {
            inner: io::stderr(),
            ansi: self.ansi,
        }
    }
}

/// Escapes control characters in what is written, except a final newline.
#[derive(Debug)]
pub struct Escaping<W> {
    inner: W,
    ansi: bool,
}

impl<W: Write> Escaping<W> {
    pub fn new(inner: W, ansi: bool) -> Escaping<W> {
        Escaping { inner, ansi }
    }
}

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, end) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, &b"\n"[..]),
            None => (buf, &b""[..]),
        };
        let mut out = Vec::with_capacity(buf.len() + 16);
        let mut i = 0;
        while i < body.len() {
            let b = body[i];
            if b == 0x1b && self.ansi {
                if let Some(len) = sgr_len(&body[i..]) {
                    out.extend_from_slice(&body[i..i + len]);
                    i += len;
                    continue;
                }
            }
            match b {
                b'\t' => out.push(b),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                0..=0x1f | 0x7f => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                _ => out.push(b),
            }
            i += 1;
        }
        out.extend_from_slice(end);
        self.inner.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The length of the SGR sequence `ESC [ [0-9;]* m` at the start of `s`, if it is one.
fn sgr_len(s: &[u8]) -> Option<usize> {
    let rest = s.strip_prefix(b"\x1b[")?;
    let params = rest
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b';')
        .count();
    (rest.get(params) == Some(&b'm')).then_some(params + 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(input: &[u8], ansi: bool) -> String {
        let mut w = Escaping::new(Vec::new(), ansi);
        w.write_all(input).unwrap();
        String::from_utf8(w.inner).unwrap()
    }

    #[test]
    fn only_the_final_newline_survives() {
        assert_eq!(
            escaped(b"skipping \"a\nERROR forged\r\x1b[2J\"\n", false),
            "skipping \"a\\nERROR forged\\r\\x1b[2J\"\n"
        );
    }

    #[test]
    fn colours_pass_when_on_and_nothing_else_does() {
        assert_eq!(
            escaped(b"\x1b[2mtime\x1b[0m \x1b]0;title\x07\n", true),
            "\x1b[2mtime\x1b[0m \\x1b]0;title\\x07\n"
        );
    }
}
