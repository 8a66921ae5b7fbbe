//! A minimal STUN client (RFC 5389 Binding) over TLS, to hold one connection to a TURN
//! server open across a certificate rotation.
//!
//! [`StunTls::connect`] opens TCP + TLS to 127.0.0.1:PORT (rustls; any certificate is
//! accepted, handshake signatures are checked: certsync's own identity-check client).
//! [`StunTls::binding`] sends a Binding request (type 0x0001, length 0, magic cookie
//! 0x2112A442, random 12-byte transaction id) and parses the answer: a Binding success
//! response (0x0101) with the same transaction id and an XOR-MAPPED-ADDRESS.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

pub const MAGIC_COOKIE: u32 = 0x2112_A442;
pub const BINDING_REQUEST: u16 = 0x0001;
pub const BINDING_SUCCESS: u16 = 0x0101;
pub const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
pub const ATTR_MAPPED_ADDRESS: u16 = 0x0001;

/// One TLS connection to a STUN/TURN server.
pub struct StunTls {
    stream: StreamOwned<ClientConnection, TcpStream>,
}

impl StunTls {
    /// TCP + TLS handshake with 127.0.0.1:PORT, SNI `sni`.
    pub fn connect(port: u16, sni: &str) -> Result<StunTls, String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        tcp.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
        tcp.set_nodelay(true).unwrap();
        let config = Arc::new(certsync::verify::client_config(true));
        let name = ServerName::try_from(sni.to_owned()).map_err(|e| format!("{sni}: {e}"))?;
        let conn = ClientConnection::new(config, name).map_err(|e| e.to_string())?;
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
        }
        Ok(StunTls { stream })
    }

    /// This end of the TCP connection (what XOR-MAPPED-ADDRESS should say).
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.sock.local_addr().unwrap()
    }

    /// Sends a Binding request and returns the XOR-MAPPED-ADDRESS of the success response.
    pub fn binding(&mut self) -> Result<SocketAddr, String> {
        let tid = transaction_id();
        self.stream
            .write_all(&binding_request(&tid))
            .and_then(|()| self.stream.flush())
            .map_err(|e| format!("send Binding request: {e}"))?;
        let mut header = [0u8; 20];
        self.stream
            .read_exact(&mut header)
            .map_err(|e| format!("read Binding response header: {e}"))?;
        let len = u16::from_be_bytes([header[2], header[3]]) as usize;
        let mut body = vec![0u8; len];
        self.stream
            .read_exact(&mut body)
            .map_err(|e| format!("read Binding response body ({len} bytes): {e}"))?;
        parse_binding_response(&header, &body, &tid)
    }
}

/// A fresh 96-bit transaction id (from the clock and a counter: unique is enough here).
pub fn transaction_id() -> [u8; 12] {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut t = [0u8; 12];
    t[..8].copy_from_slice(&nanos.to_be_bytes());
    t[8..].copy_from_slice(&N.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    t
}

/// The 20-byte Binding request: type, length 0, magic cookie, transaction id.
pub fn binding_request(tid: &[u8; 12]) -> [u8; 20] {
    let mut m = [0u8; 20];
    m[0..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    m[2..4].copy_from_slice(&0u16.to_be_bytes());
    m[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    m[8..20].copy_from_slice(tid);
    m
}

/// Checks a Binding success response for `tid` and decodes its (XOR-)MAPPED-ADDRESS.
pub fn parse_binding_response(
    header: &[u8; 20],
    body: &[u8],
    tid: &[u8; 12],
) -> Result<SocketAddr, String> {
    let kind = u16::from_be_bytes([header[0], header[1]]);
    let cookie = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if cookie != MAGIC_COOKIE {
        return Err(format!("bad magic cookie {cookie:#010x}"));
    }
    if &header[8..20] != tid {
        return Err("the response's transaction id is not the request's".into());
    }
    if kind != BINDING_SUCCESS {
        return Err(format!(
            "message type {kind:#06x}, want Binding success 0x0101"
        ));
    }
    let mut mapped = None;
    let mut i = 0;
    while i + 4 <= body.len() {
        let t = u16::from_be_bytes([body[i], body[i + 1]]);
        let l = u16::from_be_bytes([body[i + 2], body[i + 3]]) as usize;
        let v = body
            .get(i + 4..i + 4 + l)
            .ok_or_else(|| format!("attribute {t:#06x} overruns the message"))?;
        match t {
            ATTR_XOR_MAPPED_ADDRESS => return decode_address(v, true),
            ATTR_MAPPED_ADDRESS => mapped = Some(decode_address(v, false)?),
            _ => {}
        }
        i += 4 + l.div_ceil(4) * 4; // attributes are padded to 4 bytes
    }
    mapped.ok_or_else(|| "no XOR-MAPPED-ADDRESS in the Binding response".into())
}

fn decode_address(v: &[u8], xor: bool) -> Result<SocketAddr, String> {
    if v.len() < 8 || v[1] != 0x01 {
        return Err(format!("not an IPv4 address attribute: {v:02x?}"));
    }
    let mut port = u16::from_be_bytes([v[2], v[3]]);
    let mut ip = u32::from_be_bytes([v[4], v[5], v[6], v[7]]);
    if xor {
        port ^= (MAGIC_COOKIE >> 16) as u16;
        ip ^= MAGIC_COOKIE;
    }
    Ok(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
}
