//! The socket under every login, guarded: a password never goes out in clear text (or as
//! MD5, which a listener can replay) over a connection without TLS, and no server message
//! is passed on that the guard has not understood.
//!
//! tokio-postgres answers whatever authentication the server asks for. With `sslmode
//! prefer` (libpq's default, and ours) a man in the middle can answer the SSLRequest with
//! `N` and then ask for the password in clear text. So while the connection is plain
//! text, this stream reads the server's messages before tokio-postgres does and fails the
//! read that carries an `AuthenticationCleartextPassword` (3) or
//! `AuthenticationMD5Password` (5) request: the password is never sent. SCRAM-SHA-256
//! (what PostgreSQL 14+ and Aurora use) sends no password and keeps working without TLS.
//!
//! The guard reads exactly the stream the driver reads, and fails closed where it cannot
//! follow it: tokio-postgres takes *any* answer to the SSLRequest other than `S` as "no
//! TLS" and consumes that byte, so an answer other than `S` or `N` is refused (read as a
//! message, such a byte hid the clear-text request behind a made-up length); so is a
//! length under 4, one over [`MAX_BEFORE_AUTH`] before authentication is done (nothing a
//! server sends then comes near it) and one over [`MAX_MESSAGE`] afterwards (the driver
//! buffers a whole message: a notice claiming gigabytes would be held in memory).
//!
//! Once the server agrees to TLS (`S`), the bytes on the socket are encrypted and the TLS
//! layer verifies the server as `--sslmode` says; [`Watched`] then applies the same
//! length bounds to the decrypted stream.
//!
//! The TCP connection itself is opened on the first write, inside tokio-postgres's own
//! connect, so a refused or unresolvable host is reported as it always was.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_postgres::tls::{ChannelBinding, TlsConnect, TlsStream};

/// What the first bytes tokio-postgres writes are when it asks for TLS.
/// (Also sent by `doctor`, which makes its own TLS handshake.)
pub const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// The longest server message accepted before authentication is done. libpq treats
/// anything over 30,000 bytes of most types as corrupt; an authentication request, a
/// notice or an error at that stage is a few hundred bytes.
pub const MAX_BEFORE_AUTH: usize = 16 * 1024;

/// The longest server message accepted afterwards. The sidecar's own queries return a
/// few short rows; a megabyte leaves room for long notices and errors.
pub const MAX_MESSAGE: usize = 1024 * 1024;

/// Why a login was stopped before the password left; found in the error's source chain.
#[derive(Debug, thiserror::Error)]
#[error(
    "the server asked for the password in {what} over a connection without TLS; it was not sent (a server that refuses TLS and asks for a clear-text password is what a man in the middle looks like): use --sslmode verify-full, or switch the server to scram-sha-256, or pass --allow-insecure-auth for a trusted local network"
)]
pub struct InsecureAuth {
    pub what: &'static str,
}

/// The server sent something that is not the PostgreSQL protocol as the guard follows it;
/// the connection was closed before the driver read it (and before any password left).
#[derive(Debug, thiserror::Error)]
pub enum Unparsed {
    #[error(
        "the server answered the TLS request with byte {0:#04x}, neither S nor N: not a PostgreSQL server, or something in between is tampering with the connection; nothing was sent"
    )]
    SslAnswer(u8),
    #[error(
        "the server sent a message of length {0}, too short for its type: not the PostgreSQL protocol"
    )]
    Short(u32),
    #[error(
        "the server sent a message of {len} bytes, over the {bound} this client accepts {when}; the connection was closed"
    )]
    Long {
        len: u32,
        bound: usize,
        when: &'static str,
    },
}

/// What made the guard close the connection.
#[derive(Debug)]
enum Refusal {
    Insecure(&'static str),
    Unparsed(Unparsed),
}

impl From<Refusal> for io::Error {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Insecure(what) => {
                io::Error::new(io::ErrorKind::PermissionDenied, InsecureAuth { what })
            }
            Refusal::Unparsed(u) => io::Error::new(io::ErrorKind::InvalidData, u),
        }
    }
}

/// Where the conversation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exchange {
    /// Nothing written yet: the first message says whether TLS is asked for.
    Start,
    /// The SSLRequest went out; the next byte is the server's answer.
    SslAnswer,
    /// TLS: encrypted bytes, not ours to read ([`Watched`] reads them decrypted).
    Tls,
    /// Plain text: every server message is looked at.
    Plain,
    /// Something was refused: nothing more goes either way.
    Refused,
}

/// Follows server messages (type byte, 4-byte length, body) as they stream past.
#[derive(Debug, Default)]
struct Framing {
    /// The type, length and (for `R`) the 4-byte request code: 9 bytes at most.
    head: Vec<u8>,
    /// Body bytes of the current message still to pass.
    skip: usize,
    /// AuthenticationOk seen: longer messages (rows, notices) may come now.
    authenticated: bool,
    /// Refuse clear-text and MD5 password requests (plain text, not opted out).
    refuse_insecure: bool,
}

impl Framing {
    fn new(refuse_insecure: bool) -> Self {
        Self {
            refuse_insecure,
            ..Self::default()
        }
    }

    /// Looks at the next `bytes` of the stream.
    fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Refusal> {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            // Type and length first; an `R` then its 4-byte request code.
            let want = if self.head.len() < 5 { 5 } else { 9 };
            let n = (want - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.head.len() < want {
                continue;
            }
            let len = u32::from_be_bytes([self.head[1], self.head[2], self.head[3], self.head[4]]);
            if want == 5 {
                self.check_length(len)?;
            }
            if self.head[0] == b'R' {
                if want == 5 {
                    if len < 8 {
                        return Err(Refusal::Unparsed(Unparsed::Short(len)));
                    }
                    continue; // read the request code too
                }
                match u32::from_be_bytes([self.head[5], self.head[6], self.head[7], self.head[8]]) {
                    0 => self.authenticated = true,
                    3 if self.refuse_insecure => return Err(Refusal::Insecure("clear text")),
                    5 if self.refuse_insecure => return Err(Refusal::Insecure("MD5")),
                    _ => {}
                }
            }
            // What is left of the body after what the head already read (len ≥ 4 counts
            // itself; the type byte is not counted).
            self.skip = (len as usize + 1) - self.head.len();
            self.head.clear();
        }
        Ok(())
    }

    fn check_length(&self, len: u32) -> Result<(), Refusal> {
        let (bound, when) = if self.authenticated {
            (MAX_MESSAGE, "from a server")
        } else {
            (MAX_BEFORE_AUTH, "before authentication")
        };
        if len < 4 {
            Err(Refusal::Unparsed(Unparsed::Short(len)))
        } else if len as usize > bound {
            Err(Refusal::Unparsed(Unparsed::Long { len, bound, when }))
        } else {
            Ok(())
        }
    }
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

/// The TCP connection to the server, guarded as the module says.
pub struct Guarded {
    connecting: Option<Connecting>,
    socket: Option<TcpStream>,
    talk: Conversation,
}

/// What the guard knows of the conversation: where it is, and the server's messages.
#[derive(Debug)]
struct Conversation {
    exchange: Exchange,
    framing: Framing,
}

impl Conversation {
    /// Looks at bytes the server sent.
    fn inspect(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        let result = self.follow(&mut bytes);
        if result.is_err() {
            self.exchange = Exchange::Refused;
        }
        result.map_err(io::Error::from)
    }

    fn follow(&mut self, bytes: &mut &[u8]) -> Result<(), Refusal> {
        if self.exchange == Exchange::SslAnswer && !bytes.is_empty() {
            // The driver consumes this one byte whatever it is; only `S` and `N` mean
            // something the guard can follow.
            self.exchange = match bytes[0] {
                b'S' => Exchange::Tls,
                b'N' => Exchange::Plain,
                other => return Err(Refusal::Unparsed(Unparsed::SslAnswer(other))),
            };
            *bytes = &bytes[1..];
        }
        if self.exchange == Exchange::Plain {
            self.framing.feed(bytes)?;
        }
        Ok(())
    }
}

/// Reads from `inner` into `buf` and shows the new bytes to `inspect`; bytes it refuses
/// are taken back out of `buf`, so the driver never reads what the guard did not
/// understand.
fn read_inspected<R: AsyncRead + Unpin>(
    inner: &mut R,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
    inspect: impl FnOnce(&[u8]) -> io::Result<()>,
) -> Poll<io::Result<()>> {
    let before = buf.filled().len();
    ready!(Pin::new(inner).poll_read(cx, buf))?;
    let result = inspect(&buf.filled()[before..]);
    if result.is_err() {
        buf.set_filled(before);
    }
    Poll::Ready(result)
}

impl Guarded {
    /// A connection to `host:port`, opened on first use. `allow`: `--allow-insecure-auth`,
    /// clear-text and MD5 requests are answered (the other checks stay).
    pub fn new(host: &str, port: u16, allow: bool) -> Self {
        let host = host.to_string();
        Self {
            connecting: Some(Box::pin(async move {
                let socket = TcpStream::connect((host.as_str(), port)).await?;
                socket.set_nodelay(true)?;
                Ok(socket)
            })),
            socket: None,
            talk: Conversation {
                exchange: Exchange::Start,
                framing: Framing::new(!allow),
            },
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
        if this.talk.exchange == Exchange::Refused {
            return Poll::Ready(Err(Self::refused()));
        }
        ready!(this.poll_socket(cx))?;
        let Some(socket) = this.socket.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let talk = &mut this.talk;
        read_inspected(socket, cx, buf, |bytes| talk.inspect(bytes))
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let exchange = &mut this.talk.exchange;
        match exchange {
            Exchange::Refused => return Poll::Ready(Err(Self::refused())),
            Exchange::Start if buf.starts_with(&SSL_REQUEST) => *exchange = Exchange::SslAnswer,
            Exchange::Start => *exchange = Exchange::Plain,
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

/// A TLS connector whose streams are [`Watched`]: the length bounds hold under TLS too.
pub struct WatchedConnect<C>(pub C);

impl<S, C> TlsConnect<S> for WatchedConnect<C>
where
    C: TlsConnect<S>,
    C::Future: Send + 'static,
{
    type Stream = Watched<C::Stream>;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Stream, C::Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connecting = self.0.connect(stream);
        Box::pin(async move {
            Ok(Watched {
                inner: connecting.await?,
                // Under TLS the chain check decides whom the password goes to.
                framing: Framing::new(false),
                refused: false,
            })
        })
    }
}

/// The decrypted stream of a TLS connection, with the guard's length bounds.
pub struct Watched<T> {
    inner: T,
    framing: Framing,
    refused: bool,
}

impl<T: TlsStream + Unpin> TlsStream for Watched<T> {
    fn channel_binding(&self) -> ChannelBinding {
        self.inner.channel_binding()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.refused {
            return Poll::Ready(Err(Guarded::refused()));
        }
        let (framing, refused) = (&mut this.framing, &mut this.refused);
        read_inspected(&mut this.inner, cx, buf, |bytes| {
            let fed = framing.feed(bytes);
            *refused = fed.is_err();
            fed.map_err(io::Error::from)
        })
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
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

    fn found(stream: &[u8], chunk: usize) -> Option<String> {
        let mut f = Framing::new(true);
        stream
            .chunks(chunk)
            .find_map(|c| f.feed(c).err())
            .map(|r| io::Error::from(r).to_string())
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
                let got = found(&stream, chunk);
                match want {
                    Some(w) => assert!(got.as_deref().is_some_and(|g| g.contains(w)), "{got:?}"),
                    None => assert_eq!(got, None, "chunks of {chunk}"),
                }
            }
        }
    }

    #[test]
    fn lengths_the_protocol_cannot_have_or_too_long_to_buffer_are_refused() {
        // A notice claiming 2 GiB before authentication, one over the bound after it,
        // a length under 4, an `R` too short for its request code.
        let huge = [vec![b'N'], 0x8000_0000u32.to_be_bytes().to_vec()].concat();
        assert!(found(&huge, 1).is_some_and(|e| e.contains("before authentication")));
        let after = [
            auth(0, b""),
            vec![b'N'],
            (MAX_MESSAGE as u32 + 1).to_be_bytes().to_vec(),
        ]
        .concat();
        assert!(found(&after, 3).is_some_and(|e| e.contains("over the 1048576")));
        let big_ok = [auth(0, b""), message(b'D', &vec![0; MAX_BEFORE_AUTH * 2])].concat();
        assert_eq!(
            found(&big_ok, 4096),
            None,
            "long rows are fine once logged in"
        );
        assert!(found(&[b'Z', 0, 0, 0, 3], 1).is_some_and(|e| e.contains("too short")));
        assert!(found(&[b'R', 0, 0, 0, 4, b'Z'], 2).is_some_and(|e| e.contains("too short")));
    }

    #[test]
    fn an_answer_to_the_ssl_request_other_than_s_or_n_is_refused() {
        for byte in [b'E', b'X', 0, b'R'] {
            let mut g = Guarded::new("127.0.0.1", 1, true);
            g.talk.exchange = Exchange::SslAnswer;
            let err = g.talk.inspect(&[byte]).expect_err("refused");
            assert!(err.to_string().contains("neither S nor N"), "{err}");
            assert_eq!(g.talk.exchange, Exchange::Refused);
        }
    }

    #[test]
    fn the_guard_steps_aside_once_tls_is_agreed() {
        let mut g = Guarded::new("127.0.0.1", 1, false);
        g.talk.exchange = Exchange::SslAnswer;
        // Under TLS the bytes are encrypted; whatever they look like is not looked at.
        g.talk.inspect(b"S").expect("tls");
        g.talk.inspect(&auth(3, b"")).expect("not read under TLS");
        let mut plain = Guarded::new("127.0.0.1", 1, false);
        plain.talk.exchange = Exchange::SslAnswer;
        let refused = [vec![b'N'], auth(3, b"")].concat();
        let err = plain.talk.inspect(&refused).expect_err("refused");
        assert!(err.to_string().contains("clear text"), "{err}");
        assert_eq!(plain.talk.exchange, Exchange::Refused);
        let mut allowed = Guarded::new("127.0.0.1", 1, true);
        allowed.talk.exchange = Exchange::Plain;
        allowed
            .talk
            .inspect(&auth(3, b""))
            .expect("--allow-insecure-auth");
    }
}
