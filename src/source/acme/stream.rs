//! A streaming reader for acme.json: one pass over the file through a small buffer,
//! handing each certificate entry to a callback, so that a 30 MB store of 5,000
//! certificates never sits in memory whole.
//!
//! It is a fast path, not a second definition of the format. What it accepts,
//! `serde_json` (with the types in `acme.rs`) accepts and reads the same way: it
//! validates the whole document at least as strictly. When the input ends inside the
//! document (Traefik is rewriting the file), it says so with `serde_json`'s own words
//! and position. Anything else it does not handle itself (an escape inside a field it
//! reads, a struct written as an array, a duplicate field, invalid UTF-8, a syntax
//! error, a read error) makes it [`Stop::GiveUp`]: the caller reads the file whole and
//! lets `serde_json` decide, so errors and "not ready" stay exactly those of
//! `acme::parse`. Tests hold it to that on every prefix and many corruptions of a
//! real file.
//!
//! Memory: the buffer holds the current certificate entry whole (a few kB; more only
//! if an entry is that big), so the callback sees every field of an entry at once
//! whatever their order, and borrows them from the buffer without copying.

use std::io::{ErrorKind, Read};

/// Why a scan stopped before the end of the document.
#[derive(Debug)]
pub enum Stop {
    /// The input ended inside the document: `serde_json`'s message for that input
    /// (`EOF while parsing a string at line 12 column 40`), or `no content`.
    Incomplete(String),
    /// The fast path cannot decide; `serde_json` on the whole file must.
    GiveUp,
}

/// How reading stopped, inside the scanner.
enum Halt {
    /// The input ended while `serde_json` would be parsing this.
    Eof(Inside),
    /// Nothing but whitespace.
    NoContent,
    GiveUp,
}

/// What `serde_json` parses when an input ends, which its message names.
#[derive(Clone, Copy)]
enum Inside {
    Value,
    String,
    Object,
    List,
    /// A number cut after its `-`, `.`, `e` or exponent sign, which `serde_json` calls
    /// a syntax error and `acme::parse` recognises as an early end.
    Number,
}

type Result<T> = std::result::Result<T, Halt>;

/// One certificate entry, borrowed from the buffer; `None` is a missing or null field.
pub struct RawEntry<'b> {
    /// Index into the resolver names given to [`Handler::resolver`]; `None` for v1.
    pub resolver: Option<usize>,
    pub main: Option<&'b str>,
    pub sans: Option<&'b [&'b str]>,
    /// Checked to be UTF-8, but left as bytes: turning 30 MB of base64 into `&str`
    /// would check it again, and most of it is dropped unread.
    pub certificate: Option<&'b [u8]>,
    pub key: Option<&'b [u8]>,
}

/// What the scanner reports, in file order.
pub trait Handler {
    /// A resolver key of the v2/v3 layout, before the entries of its value.
    fn resolver(&mut self, name: &str);
    /// A certificate entry.
    fn entry(&mut self, entry: RawEntry<'_>);
}

/// Reads `src` to its end as an acme.json, calling `handler` for what it holds, and
/// feeding every byte read to `on_bytes` (to hash the content in the same pass).
pub fn scan<R: Read>(
    src: R,
    handler: &mut impl Handler,
    on_bytes: impl FnMut(&[u8]),
) -> std::result::Result<(), Stop> {
    let mut s = Scanner {
        src,
        on_bytes,
        buf: vec![0; INITIAL_BUFFER],
        base: 0,
        pos: 0,
        filled: 0,
        eof: false,
        lines: 0,
        line_start: 0,
        resolver_names: 0,
    };
    s.document(handler).map_err(|halt| match halt {
        Halt::GiveUp => Stop::GiveUp,
        Halt::NoContent => Stop::Incomplete("no content".into()),
        Halt::Eof(inside) => {
            let what = match inside {
                Inside::Value => "a value",
                Inside::String => "a string",
                Inside::Object => "an object",
                Inside::List => "a list",
                Inside::Number => "a number",
            };
            // serde_json places an early end at the end of the input.
            let end = s.base + s.filled;
            Stop::Incomplete(format!(
                "EOF while parsing {what} at line {} column {}",
                s.lines + 1,
                end - s.line_start
            ))
        }
    })
}

/// Big enough that refills are rare next to the parsing, small next to the file.
const INITIAL_BUFFER: usize = 64 * 1024;

/// Every reading method takes `keep`: the absolute offset from which the buffer must
/// keep its bytes while the method reads on (the start of the entry being read, whose
/// fields are borrowed once it ends). A method never discards its own token either, so
/// `keep` is clamped to where it starts; `NO_PIN` keeps nothing earlier.
const NO_PIN: usize = usize::MAX;

struct Scanner<R, F> {
    src: R,
    on_bytes: F,
    /// `buf[..filled]` holds the stream from absolute offset `base`.
    buf: Vec<u8>,
    base: usize,
    /// Absolute offset of the next byte to parse.
    pos: usize,
    filled: usize,
    eof: bool,
    /// Newlines so far and where the last line starts, for `serde_json`'s position of
    /// the end of a cut-short input. Newlines can only be whitespace there: inside a
    /// string one is an error, which gives up before the end is reached.
    lines: usize,
    line_start: usize,
    resolver_names: usize,
}

/// Where an entry's string field lies, in absolute stream offsets (quotes excluded).
#[derive(Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
}

/// What a `{` ... `}` object's key was, for the few keys the format gives meaning to.
enum Field {
    Domain,
    Certificate,
    Key,
    Main,
    Sans,
    Certificates,
    Other,
}

impl<R: Read, F: FnMut(&[u8])> Scanner<R, F> {
    // ---- buffer ----------------------------------------------------------------------

    /// Reads more input, keeping the bytes from absolute offset `keep` on. Returns
    /// false at the end of the input.
    #[cold]
    fn refill(&mut self, keep: usize) -> Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let keep_at = keep - self.base;
        if keep_at > 0 {
            self.buf.copy_within(keep_at..self.filled, 0);
            self.filled -= keep_at;
            self.base = keep;
        }
        if self.filled == self.buf.len() {
            // One entry (or one string) larger than the buffer: let it grow.
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            match self.src.read(&mut self.buf[self.filled..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    (self.on_bytes)(&self.buf[self.filled..self.filled + n]);
                    self.filled += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // A whole read meets the same error, and reports it.
                Err(_) => return Err(Halt::GiveUp),
            }
        }
    }

    /// The byte at absolute offset `at`, reading more if needed (keeping from `keep`).
    #[inline]
    fn byte_at(&mut self, at: usize, keep: usize) -> Result<Option<u8>> {
        while at - self.base >= self.filled {
            if !self.refill(keep)? {
                return Ok(None);
            }
        }
        Ok(Some(self.buf[at - self.base]))
    }

    /// The next byte that is not JSON whitespace, not consumed; `None` at the end.
    #[inline]
    fn peek(&mut self, keep: usize) -> Result<Option<u8>> {
        loop {
            let buffered = &self.buf[self.pos - self.base..self.filled];
            for (i, &b) in buffered.iter().enumerate() {
                match b {
                    b' ' | b'\r' | b'\t' => {}
                    b'\n' => {
                        self.lines += 1;
                        self.line_start = self.pos + i + 1;
                    }
                    _ => {
                        self.pos += i;
                        return Ok(Some(b));
                    }
                }
            }
            self.pos += buffered.len();
            // Whitespace is no token: only the caller's pin is kept, so a long run of
            // it costs no memory (300 MB of spaces once grew the buffer to 512 MB).
            if !self.refill(keep.min(self.pos))? {
                return Ok(None);
            }
        }
    }

    /// Like [`Self::peek`]; the end of the input here means the document was cut
    /// short while `serde_json` would be parsing `inside`.
    #[inline]
    fn next_token(&mut self, keep: usize, inside: Inside) -> Result<u8> {
        self.peek(keep)?.ok_or(Halt::Eof(inside))
    }

    fn expect(&mut self, byte: u8, keep: usize, inside: Inside) -> Result<()> {
        if self.next_token(keep, inside)? == byte {
            self.pos += 1;
            Ok(())
        } else {
            Err(Halt::GiveUp)
        }
    }

    fn text(&self, span: Span) -> &[u8] {
        &self.buf[span.start - self.base..span.end - self.base]
    }

    // ---- scalars ---------------------------------------------------------------------

    /// Reads a string and returns where its content lies; `inside` is what an end of
    /// the input before its opening quote cuts short. `typed` strings are read by
    /// `serde_json` as Rust strings: they must be valid UTF-8, and an escape in one is
    /// left to `serde_json` to decode. Other strings are only skipped, which
    /// `serde_json` does without checking UTF-8.
    fn string(&mut self, typed: bool, keep: usize, inside: Inside) -> Result<Span> {
        self.expect(b'"', keep, inside)?;
        let keep = keep.min(self.pos);
        let start = self.pos;
        let mut at = start;
        let mut ascii = true;
        loop {
            let window = &self.buf[at - self.base..self.filled];
            let (skipped, found, all_ascii) = scan_plain(window);
            ascii &= all_ascii;
            at += skipped;
            if !found {
                if !self.refill(keep)? {
                    return Err(Halt::Eof(Inside::String));
                }
                continue;
            }
            match self.buf[at - self.base] {
                b'"' => break,
                b'\\' if !typed => at = self.escape(at + 1, keep)?,
                // An escape in a typed string, or a control character (an error).
                _ => return Err(Halt::GiveUp),
            }
        }
        self.pos = at + 1;
        let span = Span { start, end: at };
        if typed && !ascii && std::str::from_utf8(self.text(span)).is_err() {
            return Err(Halt::GiveUp);
        }
        Ok(span)
    }

    /// Checks the escape whose letter is at `at`; returns the offset after it.
    fn escape(&mut self, at: usize, keep: usize) -> Result<usize> {
        let mut next = |at| match self.byte_at(at, keep) {
            Ok(Some(b)) => Ok(b),
            Ok(None) => Err(Halt::Eof(Inside::String)),
            Err(halt) => Err(halt),
        };
        match next(at)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Ok(at + 1),
            b'u' => {
                for i in 1..=4 {
                    if !next(at + i)?.is_ascii_hexdigit() {
                        return Err(Halt::GiveUp);
                    }
                }
                Ok(at + 5)
            }
            _ => Err(Halt::GiveUp),
        }
    }

    /// `null`, `true` or `false`, whose first byte is next.
    fn literal(&mut self, word: &[u8], keep: usize) -> Result<()> {
        let keep = keep.min(self.pos);
        for (i, &b) in word.iter().enumerate() {
            match self.byte_at(self.pos + i, keep)? {
                Some(got) if got == b => {}
                Some(_) => return Err(Halt::GiveUp),
                None => return Err(Halt::Eof(Inside::Value)),
            }
        }
        self.pos += word.len();
        Ok(())
    }

    /// A number, with JSON's grammar (what `serde_json` checks when it ignores one).
    /// An input that ends after `-`, `.`, `e` or its sign is cut short as surely as one
    /// that ends after a digit; `acme::parse` says so in the words of [`Inside::Number`].
    fn number(&mut self, keep: usize) -> Result<()> {
        let keep = keep.min(self.pos);
        let mut at = self.pos;
        if self.byte_at(at, keep)? == Some(b'-') {
            at += 1;
        }
        match self.byte_at(at, keep)? {
            Some(b'0') => {
                at += 1;
                if self.byte_at(at, keep)?.is_some_and(|b| b.is_ascii_digit()) {
                    return Err(Halt::GiveUp);
                }
            }
            Some(b'1'..=b'9') => at = self.digits(at, keep)?,
            None => return Err(Halt::Eof(Inside::Number)),
            _ => return Err(Halt::GiveUp),
        }
        if self.byte_at(at, keep)? == Some(b'.') {
            at = self.some_digits(at + 1, keep)?;
        }
        if let Some(b'e' | b'E') = self.byte_at(at, keep)? {
            at += 1;
            if let Some(b'+' | b'-') = self.byte_at(at, keep)? {
                at += 1;
            }
            at = self.some_digits(at, keep)?;
        }
        self.pos = at;
        Ok(())
    }

    /// The digits that must follow a number's `.` or `e`: at least one, or the end.
    fn some_digits(&mut self, at: usize, keep: usize) -> Result<usize> {
        let after = self.digits(at, keep)?;
        if after > at {
            Ok(after)
        } else if self.byte_at(at, keep)?.is_none() {
            Err(Halt::Eof(Inside::Number))
        } else {
            Err(Halt::GiveUp)
        }
    }

    fn digits(&mut self, mut at: usize, keep: usize) -> Result<usize> {
        while self.byte_at(at, keep)?.is_some_and(|b| b.is_ascii_digit()) {
            at += 1;
        }
        Ok(at)
    }

    /// Skips any value, checking it is JSON. Iterative: `serde_json` ignores values
    /// without a depth limit, so this must not run out of stack where it does not.
    fn skip_value(&mut self, keep: usize) -> Result<()> {
        let mut open: Vec<u8> = Vec::new();
        let keep = keep.min(self.pos);
        loop {
            // A value.
            match self.next_token(keep, Inside::Value)? {
                b'"' => {
                    self.string(false, keep, Inside::Value)?;
                }
                b'n' => self.literal(b"null", keep)?,
                b't' => self.literal(b"true", keep)?,
                b'f' => self.literal(b"false", keep)?,
                b'-' | b'0'..=b'9' => self.number(keep)?,
                b @ (b'[' | b'{') => {
                    self.pos += 1;
                    let (close, inside) = match b {
                        b'[' => (b']', Inside::List),
                        _ => (b'}', Inside::Object),
                    };
                    if self.next_token(keep, inside)? == close {
                        self.pos += 1;
                    } else {
                        open.push(b);
                        if b == b'{' {
                            self.key_colon(keep)?;
                        }
                        continue;
                    }
                }
                _ => return Err(Halt::GiveUp),
            }
            // After a value: a comma and the next member, or the end of containers.
            loop {
                let Some(&inner) = open.last() else {
                    return Ok(());
                };
                let inside = if inner == b'[' {
                    Inside::List
                } else {
                    Inside::Object
                };
                match (self.next_token(keep, inside)?, inner) {
                    (b',', _) => {
                        self.pos += 1;
                        if inner == b'{' {
                            self.key_colon(keep)?;
                        }
                        break;
                    }
                    (b']', b'[') | (b'}', b'{') => {
                        self.pos += 1;
                        open.pop();
                    }
                    _ => return Err(Halt::GiveUp),
                }
            }
        }
    }

    /// An ignored object's key and its colon.
    fn key_colon(&mut self, keep: usize) -> Result<()> {
        self.string(false, keep, Inside::Object)?;
        self.expect(b':', keep, Inside::Object)
    }

    // ---- the acme.json shape ---------------------------------------------------------

    /// Iterates over the members of an object that `serde_json` reads into a type:
    /// calls `member` with each key once the colon is read (the key is still in the
    /// buffer then). Such keys are compared as bytes; an escaped one gives up, since
    /// `serde_json` would unescape it before comparing.
    fn object(
        &mut self,
        keep: usize,
        mut member: impl FnMut(&mut Self, Span) -> Result<()>,
    ) -> Result<()> {
        self.expect(b'{', keep, Inside::Value)?;
        if self.next_token(keep, Inside::Object)? == b'}' {
            self.pos += 1;
            return Ok(());
        }
        loop {
            // After `{` a byte is there; after `,` serde_json expects a value.
            self.next_token(keep, Inside::Value)?;
            let key_keep = keep.min(self.pos);
            let key = self.string(true, key_keep, Inside::Value)?;
            self.expect(b':', key_keep, Inside::Object)?;
            member(self, key)?;
            match self.next_token(keep, Inside::Object)? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(Halt::GiveUp),
            }
        }
    }

    /// Iterates over the elements of an array that `serde_json` reads into a `Vec`.
    fn array(
        &mut self,
        keep: usize,
        mut element: impl FnMut(&mut Self) -> Result<()>,
    ) -> Result<()> {
        self.expect(b'[', keep, Inside::Value)?;
        if self.next_token(keep, Inside::List)? == b']' {
            self.pos += 1;
            return Ok(());
        }
        loop {
            element(self)?;
            match self.next_token(keep, Inside::List)? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(Halt::GiveUp),
            }
        }
    }

    /// Whether a `null` is next (and consumes it): an `Option` field that is `None`.
    fn null(&mut self, keep: usize) -> Result<bool> {
        if self.next_token(keep, Inside::Value)? == b'n' {
            self.literal(b"null", keep)?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn field(&self, key: Span) -> Field {
        match self.text(key) {
            b"domain" | b"Domain" => Field::Domain,
            b"certificate" | b"Certificate" => Field::Certificate,
            b"key" | b"Key" => Field::Key,
            b"main" | b"Main" => Field::Main,
            b"sans" | b"SANs" => Field::Sans,
            b"Certificates" => Field::Certificates,
            _ => Field::Other,
        }
    }

    /// The top level: resolvers (v2/v3) or the v1 fields, then nothing but whitespace.
    fn document(&mut self, handler: &mut impl Handler) -> Result<()> {
        if self.peek(NO_PIN)?.is_none() {
            return Err(Halt::NoContent);
        }
        self.object(NO_PIN, |s, key| match s.text(key) {
            b"Certificates" => s.certificates(None, handler),
            b"Account" | b"HTTPChallenges" | b"TLSChallenges" => s.skip_value(NO_PIN),
            name => {
                // UTF-8 was checked when the key was read.
                handler.resolver(std::str::from_utf8(name).map_err(|_| Halt::GiveUp)?);
                let index = s.resolver_names;
                s.resolver_names += 1;
                s.resolver(index, handler)
            }
        })?;
        match self.peek(NO_PIN)? {
            None => Ok(()),
            Some(_) => Err(Halt::GiveUp),
        }
    }

    /// A resolver's value: `null`, or an object whose `Certificates` is read.
    fn resolver(&mut self, index: usize, handler: &mut impl Handler) -> Result<()> {
        if self.null(NO_PIN)? {
            return Ok(());
        }
        let mut seen = false;
        self.object(NO_PIN, |s, key| match s.field(key) {
            Field::Certificates if !std::mem::replace(&mut seen, true) => {
                s.certificates(Some(index), handler)
            }
            Field::Certificates => Err(Halt::GiveUp),
            _ => s.skip_value(NO_PIN),
        })
    }

    /// A `Certificates` value: `null` or an array of entries.
    fn certificates(&mut self, resolver: Option<usize>, handler: &mut impl Handler) -> Result<()> {
        if self.null(NO_PIN)? {
            return Ok(());
        }
        let mut sans = Vec::new();
        self.array(NO_PIN, |s| s.entry(resolver, &mut sans, handler))
    }

    /// One certificate entry: read whole into the buffer, then handed over.
    fn entry(
        &mut self,
        resolver: Option<usize>,
        sans: &mut Vec<Span>,
        handler: &mut impl Handler,
    ) -> Result<()> {
        // Everything from here to the end of the entry stays in the buffer.
        self.next_token(NO_PIN, Inside::Value)?;
        let keep = self.pos;
        let (mut domain, mut certificate, mut key) = (false, None, None);
        let (mut main, mut has_sans) = (None, false);
        let (mut seen_main, mut seen_sans) = (false, false);
        let text = |s: &mut Self| -> Result<Option<Span>> {
            if s.null(keep)? {
                Ok(None)
            } else {
                s.string(true, keep, Inside::Value).map(Some)
            }
        };
        sans.clear();
        self.object(keep, |s, k| match s.field(k) {
            Field::Domain if !std::mem::replace(&mut domain, true) => {
                if s.null(keep)? {
                    return Ok(());
                }
                s.object(keep, |s, k| match s.field(k) {
                    Field::Main if !std::mem::replace(&mut seen_main, true) => {
                        main = text(s)?;
                        Ok(())
                    }
                    Field::Sans if !std::mem::replace(&mut seen_sans, true) => {
                        if !s.null(keep)? {
                            has_sans = true;
                            s.array(keep, |s| {
                                sans.push(s.string(true, keep, Inside::Value)?);
                                Ok(())
                            })?;
                        }
                        Ok(())
                    }
                    Field::Main | Field::Sans => Err(Halt::GiveUp),
                    _ => s.skip_value(keep),
                })
            }
            Field::Certificate if certificate.is_none() => {
                certificate = Some(text(s)?);
                Ok(())
            }
            Field::Key if key.is_none() => {
                key = Some(text(s)?);
                Ok(())
            }
            Field::Domain | Field::Certificate | Field::Key => Err(Halt::GiveUp),
            _ => s.skip_value(keep),
        })?;
        // Every span was checked to be UTF-8 when read (typed strings).
        let utf8 = |span: Span| std::str::from_utf8(self.text(span)).map_err(|_| Halt::GiveUp);
        let sans_text: Vec<&str> = sans.iter().map(|&s| utf8(s)).collect::<Result<_>>()?;
        handler.entry(RawEntry {
            resolver,
            main: main.map(utf8).transpose()?,
            sans: has_sans.then_some(&sans_text[..]),
            certificate: certificate.flatten().map(|span| self.text(span)),
            key: key.flatten().map(|span| self.text(span)),
        });
        Ok(())
    }
}

/// Finds the first `"`, `\` or control character in `bytes`, sixteen bytes at a
/// time. Returns how many bytes precede it, whether one was found, and whether the
/// bytes before it are all ASCII. The base64 payloads that make up almost all of an
/// acme.json go through here, so it must not look at them one byte at a time.
#[inline]
fn scan_plain(bytes: &[u8]) -> (usize, bool, bool) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte of `w` that is `"`, `\` or below 0x20: a byte is zero
    // after the XOR, or below 0x20, exactly when subtracting borrows into its high
    // bit while its own high bit is clear. A borrow can also flag a byte above a true
    // one, never below, so the lowest flag is exact; it is the only one used.
    let special = |w: u64| {
        ((w ^ (ONES * b'"' as u64)).wrapping_sub(ONES)
            | (w ^ (ONES * b'\\' as u64)).wrapping_sub(ONES)
            | w.wrapping_sub(ONES * 0x20))
            & !w
            & HIGH
    };
    let found = |at: usize, w: u64, flags: u64, high: u64| {
        let k = (flags.trailing_zeros() / 8) as usize;
        let before = if k == 0 {
            0
        } else {
            w & (u64::MAX >> (64 - 8 * k))
        };
        (at + k, true, (high | before) & HIGH == 0)
    };
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("eight bytes"));
    let mut high = 0u64;
    let mut at = 0;
    // Two words per branch: the payloads run for kilobytes between stops.
    let mut pairs = bytes.chunks_exact(16);
    for pair in &mut pairs {
        let (a, b) = (word(&pair[..8]), word(&pair[8..]));
        let (fa, fb) = (special(a), special(b));
        if fa | fb != 0 {
            return if fa != 0 {
                found(at, a, fa, high)
            } else {
                found(at + 8, b, fb, high | a)
            };
        }
        high |= a | b;
        at += 16;
    }
    let rest = pairs.remainder();
    if rest.len() >= 8 {
        let a = word(&rest[..8]);
        let fa = special(a);
        if fa != 0 {
            return found(at, a, fa, high);
        }
        high |= a;
        at += 8;
    }
    for &b in &bytes[at..] {
        if b == b'"' || b == b'\\' || b < 0x20 {
            return (at, true, high & HIGH == 0);
        }
        high |= b as u64;
        at += 1;
    }
    (at, false, high & HIGH == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_plain_finds_the_first_special_byte() {
        let cases: &[&[u8]] = &[
            b"",
            b"abc",
            b"abcdefgh\"",
            b"abcdefghijklmnop",
            b"abc\\def",
            b"a\x01",
            b"\"",
            b"0123456\x1f89",
            "é\"".as_bytes(),
            "abcdefgé".as_bytes(),
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef+/==\"",
            b"\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x20\x21\x23",
        ];
        // Every length up to three pairs, with each kind of stop at each place and a
        // non-ASCII byte before or after it.
        let mut generated = Vec::new();
        for len in 0..48 {
            let plain: Vec<u8> = (0..len)
                .map(|i| b"QWxhZGRpbjpvcGVuIHNlc2FtZQ+/="[i % 29])
                .collect();
            generated.push(plain.clone());
            for at in 0..len {
                for stop in [b'"', b'\\', 0x00, 0x1f, 0xc3] {
                    let mut v = plain.clone();
                    v[at] = stop;
                    generated.push(v.clone());
                    if at + 1 < len {
                        v[at + 1] = 0xa9;
                        generated.push(v.clone());
                    }
                    if at > 0 {
                        v[at - 1] = 0xe9;
                        generated.push(v);
                    }
                }
            }
        }
        let cases: Vec<&[u8]> = cases
            .iter()
            .copied()
            .chain(generated.iter().map(|v| &v[..]))
            .collect();
        for &case in &cases {
            for start in 0..case.len().min(9) {
                let bytes = &case[start..];
                let want = bytes
                    .iter()
                    .position(|&b| b == b'"' || b == b'\\' || b < 0x20);
                let (at, found, ascii) = scan_plain(bytes);
                assert_eq!(found, want.is_some(), "{bytes:?}");
                assert_eq!(at, want.unwrap_or(bytes.len()), "{bytes:?}");
                assert_eq!(ascii, bytes[..at].is_ascii(), "{bytes:?}");
            }
        }
    }
}
