//! The socket under every login, guarded: a password never goes out in clear text (or as
//! MD5, which a listener can replay) over a connection without TLS.
//!
//! tokio-postgres answers whatever authentication the server asks for. With `sslmode
//! prefer` (libpq's default, and ours) a man in the middle can answer the SSLRequest with
//! `N` and then ask for the password in clear text. So while the connection is plain
//! text, this stream reads the server's messages before tokio-postgres does and fails the
//! read that carries an `AuthenticationCleartextPassword` (3) or
//! `AuthenticationMD5Password` (5) request: the password is never sent. SCRAM-SHA-256
//! (what PostgreSQL 14+ and Aurora use) sends no password and keeps working without TLS.
//! Once the server agrees to TLS (`S`), the guard steps aside: the bytes are encrypted,
//! and the TLS layer verifies the server as `--sslmode` says.
//!
//! The TCP connection itself is opened on the first write, inside tokio-postgres's own
//! connect, so a refused or unresolvable host is reported as it always was.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What the first bytes tokio-postgres writes are when it asks for TLS.
/// (Also sent by `doctor`, which makes its own TLS handshake.)
pub const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Why a login was stopped before the password left; found in the error's source chain.
#[derive(Debug, thiserror::Error)]
#[error(
    "the server asked for the password in {what} over a connection without TLS; it was not sent (a server that refuses TLS and asks for a clear-text password is what a man in the middle looks like): use --sslmode verify-full, or switch the server to scram-sha-256, or pass --allow-insecure-auth for a trusted local network"
)]
pub struct InsecureAuth {
    pub what: &'static str,
}

/// Where the conversation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing written yet: the first message says whether TLS is asked for.
    Start,
    /// The SSLRequest went out; the next byte is the server's answer.
    SslAnswer,
    /// TLS: encrypted bytes, not ours to read.
    Tls,
    /// Plain text: every server message is looked at.
    Plain,
    /// A forbidden request was seen: nothing more goes either way.
    Refused,
}

/// Reads server messages (type byte, 4-byte length, body) as they stream past.
#[derive(Debug, Default)]
struct Messages {
    /// The type, length and (for `R`) the 4-byte request code: 9 bytes at most.
    head: Vec<u8>,
    /// Body bytes of the current message still to pass.
    skip: usize,
}

impl Messages {
    /// Looks at `bytes`; the name of a forbidden request when one is among them.
    fn feed(&mut self, mut bytes: &[u8]) -> Option<&'static str> {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let want = if self.head.first() == Some(&b'R') {
                9
            } else {
                5
            };
            let n = (want - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.head.len() < want {
                continue;
            }
            let len = u32::from_be_bytes([self.head[1], self.head[2], self.head[3], self.head[4]]);
            if want == 5 && self.head[0] == b'R' && len >= 8 {
                continue; // read the request code too
            }
            if self.head[0] == b'R' && self.head.len() == 9 {
                match u32::from_be_bytes([self.head[5], self.head[6], self.head[7], self.head[8]]) {
                    3 => return Some("clear text"),
                    5 => return Some("MD5"),
                    _ => {}
                }
            }
            // What is left of the body after what the head already read.
            self.skip = (len as usize + 1).saturating_sub(self.head.len());
            self.head.clear();
        }
        None
    }
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

/// The TCP connection to the server, guarded as the module says.
pub struct Guarded {
    connecting: Option<Connecting>,
    socket: Option<TcpStream>,
    phase: Phase,
    messages: Messages,
    /// `--allow-insecure-auth`: the guard only watches.
    allow: bool,
}

impl Guarded {
    /// A connection to `host:port`, opened on first use.
    pub fn new(host: &str, port: u16, allow: bool) -> Self {
        let host = host.to_string();
        Self {
            connecting: Some(Box::pin(async move {
                let socket = TcpStream::connect((host.as_str(), port)).await?;
                socket.set_nodelay(true)?;
                Ok(socket)
            })),
            socket: None,
            phase: Phase::Start,
            messages: Messages::default(),
            allow,
        }
    }

    fn poll_socket(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&mut TcpStream>> {
        if let Some(connecting) = self.connecting.as_mut() {
            let socket = ready!(connecting.as_mut().poll(cx))?;
            self.connecting = None;
            self.socket = Some(socket);
        }
        match self.socket.as_mut() {
            Some(s) => Poll::Ready(Ok(s)),
            None => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    /// Looks at bytes the server sent.
    fn inspect(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        if self.phase == Phase::SslAnswer && !bytes.is_empty() {
            self.phase = if bytes[0] == b'S' {
                Phase::Tls
            } else {
                Phase::Plain
            };
            // `N` is a lone byte; anything else (an old server's error) is a message.
            if matches!(bytes[0], b'S' | b'N') {
                bytes = &bytes[1..];
            }
        }
        if self.phase != Phase::Plain || self.allow {
            return Ok(());
        }
        match self.messages.feed(bytes) {
            Some(what) => {
                self.phase = Phase::Refused;
                Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    InsecureAuth { what },
                ))
            }
            None => Ok(()),
        }
    }

    fn refused() -> io::Error {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            "login stopped by the guard",
        )
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.phase == Phase::Refused {
            return Poll::Ready(Err(Self::refused()));
        }
        let before = buf.filled().len();
        let socket = ready!(this.poll_socket(cx))?;
        ready!(Pin::new(socket).poll_read(cx, buf))?;
        Poll::Ready(this.inspect(&buf.filled()[before..]))
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.phase {
            Phase::Refused => return Poll::Ready(Err(Self::refused())),
            Phase::Start if buf.starts_with(&SSL_REQUEST) => this.phase = Phase::SslAnswer,
            Phase::Start => this.phase = Phase::Plain,
            _ => {}
        }
        let socket = ready!(this.poll_socket(cx))?;
        Pin::new(socket).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let socket = ready!(self.get_mut().poll_socket(cx))?;
        Pin::new(socket).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let socket = ready!(self.get_mut().poll_socket(cx))?;
        Pin::new(socket).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn auth(code: u32, extra: &[u8]) -> Vec<u8> {
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(extra);
        message(b'R', &body)
    }

    #[test]
    fn clear_text_and_md5_requests_are_found_however_the_bytes_are_split() {
        let notice = message(b'N', b"SNOTICE\0Mhello\0\0");
        for (request, want) in [
            (auth(3, b""), Some("clear text")),
            (auth(5, b"salt"), Some("MD5")),
            (auth(10, b"SCRAM-SHA-256\0\0"), None),
            (auth(0, b""), None),
        ] {
            let stream = [notice.clone(), request, message(b'Z', b"I")].concat();
            for chunk in 1..=stream.len() {
                let mut m = Messages::default();
                let found = stream.chunks(chunk).find_map(|c| m.feed(c));
                assert_eq!(found, want, "chunks of {chunk}");
            }
        }
    }

    #[test]
    fn the_guard_steps_aside_once_tls_is_agreed() {
        let mut g = Guarded::new("127.0.0.1", 1, false);
        g.phase = Phase::SslAnswer;
        // Under TLS the bytes are encrypted; whatever they look like is not looked at.
        g.inspect(b"S").expect("tls");
        g.inspect(&auth(3, b"")).expect("not read under TLS");
        let mut plain = Guarded::new("127.0.0.1", 1, false);
        plain.phase = Phase::SslAnswer;
        let refused = [vec![b'N'], auth(3, b"")].concat();
        let err = plain.inspect(&refused).expect_err("refused");
        assert!(err.to_string().contains("clear text"), "{err}");
        assert_eq!(plain.phase, Phase::Refused);
        let mut allowed = Guarded::new("127.0.0.1", 1, true);
        allowed.phase = Phase::Plain;
        allowed
            .inspect(&auth(3, b""))
            .expect("--allow-insecure-auth");
    }
}
