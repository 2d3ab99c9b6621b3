//! An Aurora resume simulator: a TCP front for a real PostgreSQL that decides, per
//! accepted connection, what the client meets, then lets later connections through.
//!
//! Aurora Serverless v2 resuming from 0 ACU, failing over or full shows up at the client
//! as one of these: a connect that hangs for 15–30 s and then works ([`Act::Hold`]); a
//! connection closed before any answer ([`Act::Drop`]); a TLS handshake cut off
//! ([`Act::CutTls`]); or a FATAL `ErrorResponse` with a SQLSTATE ([`Act::Fatal`]) such as
//! 57P03 (starting up), 53300 (too many connections), 28000, 08006 or 57P01. Each is
//! produced here on the real wire protocol, so the sidecar's own client library parses it.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What one accepted connection meets.
#[derive(Debug, Clone)]
pub enum Act {
    /// Forward to the server untouched.
    Pass,
    /// Accept, wait, then forward (a resume from 0 ACU holding the connect).
    Hold(Duration),
    /// Accept and close without a byte.
    Drop,
    /// Answer the SSLRequest with 'S', read the start of the ClientHello, close.
    CutTls,
    /// Answer the startup message with a FATAL ErrorResponse carrying this SQLSTATE.
    Fatal(&'static str, &'static str),
    /// A downgrading man in the middle: decline TLS, then ask for the password with this
    /// authentication request (3 clear text, 5 MD5). What the client sends back within a
    /// second is recorded ([`Front::answers`]: `got p …` or `nothing`).
    AskPassword(u32),
    /// The same, but the TLS request is answered with this byte instead of `N` (a byte
    /// the driver takes as "no TLS" and a careless guard reads as a message).
    AskPasswordAfter(u8, u32),
    /// Decline TLS, then send the head of a NoticeResponse claiming this length and
    /// stream zeros for up to 3 s (as long as the client reads). Records in
    /// [`Front::answers`] how many bytes the client took: `took N`.
    HugeNotice(u32),
    /// A fake server that lets anyone in (AuthenticationOk) and answers every extended
    /// query with one row of one column of this type OID holding this value (`None`:
    /// NULL), and every simple query with success.
    Answer(u32, Option<&'static str>),
}

type Hook = Box<dyn FnMut() + Send>;

struct Shared {
    script: VecDeque<Act>,
    /// What each connection met, in order.
    met: Vec<String>,
    /// What clients sent back to [`Act::AskPassword`], in order.
    answers: Vec<String>,
    /// `(needle, hook)`: when a client's bytes contain the needle, the hook runs once,
    /// before those bytes are forwarded.
    hook: Option<(Vec<u8>, Hook)>,
}

pub struct Front {
    pub port: u16,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
}

impl Front {
    /// A front on a free port for `127.0.0.1:upstream`. Connections meet `script` in order,
    /// then [`Act::Pass`].
    pub fn start(upstream: u16, script: Vec<Act>) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").expect("front binds");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new(Mutex::new(Shared {
            script: script.into(),
            met: Vec::new(),
            answers: Vec::new(),
            hook: None,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (shared.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let act = {
                    let mut g = s.lock().expect("front lock");
                    let act = g.script.pop_front().unwrap_or(Act::Pass);
                    g.met.push(label(&act));
                    act
                };
                let s = s.clone();
                thread::spawn(move || {
                    let _ = serve(conn, act, upstream, &s);
                });
            }
        });
        Front { port, shared, stop }
    }

    /// Runs `hook` once, when a client first sends bytes containing `needle` (e.g. the
    /// text of a query), before the server sees them.
    pub fn on_client_bytes(&self, needle: &[u8], hook: impl FnMut() + Send + 'static) {
        self.shared.lock().expect("front lock").hook = Some((needle.to_vec(), Box::new(hook)));
    }

    /// What each connection met so far: "pass", "hold", "drop", "cut-tls", "fatal 57P03".
    pub fn met(&self) -> Vec<String> {
        self.shared.lock().expect("front lock").met.clone()
    }

    pub fn connections(&self) -> usize {
        self.shared.lock().expect("front lock").met.len()
    }

    /// What clients sent back to [`Act::AskPassword`].
    pub fn answers(&self) -> Vec<String> {
        self.shared.lock().expect("front lock").answers.clone()
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn label(act: &Act) -> String {
    match act {
        Act::Pass => "pass".into(),
        Act::Hold(_) => "hold".into(),
        Act::Drop => "drop".into(),
        Act::CutTls => "cut-tls".into(),
        Act::Fatal(code, _) => format!("fatal {code}"),
        Act::AskPassword(code) => format!("ask-password {code}"),
        Act::AskPasswordAfter(byte, code) => format!("ask-password {code} after {byte:#04x}"),
        Act::HugeNotice(len) => format!("notice of {len}"),
        Act::Answer(oid, value) => format!("answer {oid} {value:?}"),
    }
}

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

fn serve(
    mut client: TcpStream,
    act: Act,
    upstream: u16,
    shared: &Arc<Mutex<Shared>>,
) -> io::Result<()> {
    match act {
        Act::Pass => forward(client, upstream, shared),
        Act::Hold(d) => {
            thread::sleep(d);
            forward(client, upstream, shared)
        }
        Act::Drop => client.shutdown(Shutdown::Both),
        Act::CutTls => {
            let (code, _) = read_startup(&mut client)?;
            if code == SSL_REQUEST {
                client.write_all(b"S")?;
                let mut hello = [0u8; 64];
                let _ = client.read(&mut hello)?;
            }
            client.shutdown(Shutdown::Both)
        }
        Act::Fatal(sqlstate, message) => {
            decline_tls(&mut client)?;
            client.write_all(&error_response(sqlstate, message))?;
            client.shutdown(Shutdown::Both)
        }
        Act::Answer(oid, value) => {
            decline_tls(&mut client)?;
            answer_queries(client, oid, value)
        }
        Act::AskPassword(auth) => ask_password(client, b'N', auth, shared),
        Act::AskPasswordAfter(byte, auth) => ask_password(client, byte, auth, shared),
        Act::HugeNotice(len) => {
            answer_tls(&mut client, b'N')?;
            let mut head = vec![b'N'];
            head.extend_from_slice(&len.to_be_bytes());
            client.write_all(&head)?;
            client.set_write_timeout(Some(Duration::from_millis(500)))?;
            let zeros = vec![0u8; 64 * 1024];
            let (mut took, started) = (0usize, std::time::Instant::now());
            while started.elapsed() < Duration::from_secs(3) {
                match client.write(&zeros) {
                    Ok(n) => took += n,
                    Err(_) => break,
                }
            }
            shared
                .lock()
                .expect("front lock")
                .answers
                .push(format!("took {took}"));
            client.shutdown(Shutdown::Both)
        }
    }
}

/// Answers the TLS request with `byte`, asks for the password with request `auth` and
/// records what the client sent back within a second.
fn ask_password(
    mut client: TcpStream,
    byte: u8,
    auth: u32,
    shared: &Arc<Mutex<Shared>>,
) -> io::Result<()> {
    // A client that gives up after the TLS answer never sends its startup message.
    if answer_tls(&mut client, byte).is_err() {
        shared
            .lock()
            .expect("front lock")
            .answers
            .push("nothing".into());
        return Ok(());
    }
    let mut request = vec![b'R'];
    // MD5 carries a 4-byte salt after the code.
    let len: u32 = if auth == 5 { 12 } else { 8 };
    request.extend_from_slice(&len.to_be_bytes());
    request.extend_from_slice(&auth.to_be_bytes());
    if auth == 5 {
        request.extend_from_slice(b"salt");
    }
    client.write_all(&request)?;
    client.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut answer = Vec::new();
    let _ = client.read_to_end(&mut answer);
    let seen = match answer.first() {
        Some(t) => format!("got {} ({} bytes)", *t as char, answer.len()),
        None => "nothing".into(),
    };
    shared.lock().expect("front lock").answers.push(seen);
    client.shutdown(Shutdown::Both)
}

/// A backend message: type, length, body.
fn backend(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// The fake server of [`Act::Answer`], after the startup message.
fn answer_queries(mut client: TcpStream, oid: u32, value: Option<&str>) -> io::Result<()> {
    let ready = backend(b'Z', b"I");
    client.write_all(&[backend(b'R', &0u32.to_be_bytes()), ready.clone()].concat())?;
    let mut params = 0u16;
    loop {
        let mut head = [0u8; 5];
        client.read_exact(&mut head)?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        client.read_exact(&mut body)?;
        let reply = match head[0] {
            // Parse: as many text parameters as the query has `$n`.
            b'P' => {
                let text = String::from_utf8_lossy(&body);
                params = (1..=9).filter(|n| text.contains(&format!("${n}"))).count() as u16;
                backend(b'1', b"")
            }
            b'D' => {
                let mut description = params.to_be_bytes().to_vec();
                for _ in 0..params {
                    description.extend_from_slice(&25u32.to_be_bytes());
                }
                let mut row = 1u16.to_be_bytes().to_vec();
                row.extend_from_slice(b"answer\0");
                row.extend_from_slice(&0u32.to_be_bytes()); // table
                row.extend_from_slice(&0u16.to_be_bytes()); // column
                row.extend_from_slice(&oid.to_be_bytes());
                row.extend_from_slice(&(-1i16).to_be_bytes()); // size
                row.extend_from_slice(&(-1i32).to_be_bytes()); // modifier
                row.extend_from_slice(&0u16.to_be_bytes()); // text format
                [backend(b't', &description), backend(b'T', &row)].concat()
            }
            b'B' => backend(b'2', b""),
            b'E' => {
                let mut data = 1u16.to_be_bytes().to_vec();
                match value {
                    Some(v) => {
                        data.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        data.extend_from_slice(v.as_bytes());
                    }
                    None => data.extend_from_slice(&(-1i32).to_be_bytes()),
                }
                [backend(b'D', &data), backend(b'C', b"SELECT 1\0")].concat()
            }
            b'C' => backend(b'3', b""),
            b'S' => ready.clone(),
            b'Q' => [backend(b'C', b"OK\0"), ready.clone()].concat(),
            b'X' => return client.shutdown(Shutdown::Both),
            _ => Vec::new(),
        };
        client.write_all(&reply)?;
    }
}

/// Declines TLS/GSS so the startup message arrives in the clear, as a server without TLS
/// would (or an attacker who strips it), and reads that startup message.
fn decline_tls(client: &mut TcpStream) -> io::Result<()> {
    answer_tls(client, b'N')
}

/// Answers TLS/GSS requests with `byte` and reads the startup message that follows.
fn answer_tls(client: &mut TcpStream, byte: u8) -> io::Result<()> {
    let (mut code, _) = read_startup(client)?;
    while code == SSL_REQUEST || code == GSSENC_REQUEST {
        client.write_all(&[byte])?;
        code = read_startup(client)?.0;
    }
    Ok(())
}

/// Reads one untyped startup-phase message; returns its code (protocol version or request
/// code) and body.
fn read_startup(c: &mut TcpStream) -> io::Result<(u32, Vec<u8>)> {
    let mut len = [0u8; 4];
    c.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if !(8..=10_000).contains(&len) {
        return Err(io::Error::other("bad startup length"));
    }
    let mut body = vec![0u8; len - 4];
    c.read_exact(&mut body)?;
    let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    Ok((code, body))
}

/// A FATAL `ErrorResponse` ('E'), as the server sends it before closing.
pub fn error_response(sqlstate: &str, message: &str) -> Vec<u8> {
    let mut fields = Vec::new();
    for (tag, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', sqlstate),
        (b'M', message),
    ] {
        fields.push(tag);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut msg = vec![b'E'];
    msg.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    msg.extend_from_slice(&fields);
    msg
}

fn forward(client: TcpStream, upstream: u16, shared: &Arc<Mutex<Shared>>) -> io::Result<()> {
    let server = TcpStream::connect(("127.0.0.1", upstream))?;
    let (c2, s2) = (client.try_clone()?, server.try_clone()?);
    let back = thread::spawn(move || copy(s2, c2, None));
    copy(client, server, Some(shared.clone()));
    let _ = back.join();
    Ok(())
}

/// Copies until EOF or error, then shuts both ends down so the other direction ends too.
fn copy(mut from: TcpStream, mut to: TcpStream, watch: Option<Arc<Mutex<Shared>>>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(shared) = &watch {
            let hook = {
                let mut g = shared.lock().expect("front lock");
                let hit = g
                    .hook
                    .as_ref()
                    .is_some_and(|(needle, _)| buf[..n].windows(needle.len()).any(|w| w == needle));
                if hit { g.hook.take() } else { None }
            };
            if let Some((_, mut hook)) = hook {
                hook();
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// What one HTTP request to the Secrets Manager front meets.
#[derive(Debug, Clone)]
pub enum HttpAct {
    /// Forward to moto.
    Pass,
    /// Answer with this status and AWS JSON error type (`ThrottlingException`,
    /// `InternalServiceError`, …), as the service does.
    Status(u16, &'static str),
}

/// An HTTP front for moto's Secrets Manager: one request per connection (every answer says
/// `Connection: close`), each meeting the next [`HttpAct`] of the script, then `Pass`.
pub struct HttpFront {
    pub endpoint: String,
    shared: Arc<Mutex<(VecDeque<HttpAct>, Vec<String>)>>,
}

impl HttpFront {
    pub fn start(upstream: u16, script: Vec<HttpAct>) -> HttpFront {
        let listener = TcpListener::bind("127.0.0.1:0").expect("front binds");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new(Mutex::new((VecDeque::from(script), Vec::new())));
        let s = shared.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                thread::spawn(move || {
                    let _ = serve_http(conn, upstream, &s);
                });
            }
        });
        HttpFront {
            endpoint: format!("http://127.0.0.1:{port}"),
            shared,
        }
    }

    /// Each request so far: its `X-Amz-Target` operation and what it met, e.g.
    /// `GetSecretValue 400 ThrottlingException` or `GetSecretValue pass`.
    pub fn met(&self) -> Vec<String> {
        self.shared.lock().expect("front lock").1.clone()
    }
}

fn serve_http(
    mut client: TcpStream,
    upstream: u16,
    shared: &Arc<Mutex<(VecDeque<HttpAct>, Vec<String>)>>,
) -> io::Result<()> {
    let request = read_http(&mut client)?;
    let head = String::from_utf8_lossy(&request[..request.len().min(4096)]).to_string();
    let op = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-amz-target")
                .then(|| v.trim().rsplit('.').next().unwrap_or("").to_string())
        })
        .unwrap_or_else(|| "?".into());
    let act = {
        let mut g = shared.lock().expect("front lock");
        let act = g.0.pop_front().unwrap_or(HttpAct::Pass);
        g.1.push(match &act {
            HttpAct::Pass => format!("{op} pass"),
            HttpAct::Status(code, ty) => format!("{op} {code} {ty}"),
        });
        act
    };
    let response = match act {
        HttpAct::Pass => {
            let mut server = TcpStream::connect(("127.0.0.1", upstream))?;
            server.write_all(&request)?;
            let response = read_http(&mut server)?;
            force_close(&response)
        }
        HttpAct::Status(code, ty) => {
            let body = format!(r#"{{"__type":"{ty}","message":"injected by the test front"}}"#);
            format!(
                "HTTP/1.1 {code} Injected\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-ErrorType: {ty}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        }
    };
    client.write_all(&response)?;
    client.shutdown(Shutdown::Both)
}

/// One HTTP message (head and a `Content-Length` body).
fn read_http(c: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = c.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::other("closed before the end of the head"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = c.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(buf)
}

/// The response with its `Connection` header replaced by `Connection: close`.
fn force_close(response: &[u8]) -> Vec<u8> {
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return response.to_vec();
    };
    let head = String::from_utf8_lossy(&response[..end]);
    let mut out: Vec<String> = head
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(str::to_string)
        .collect();
    out.push("Connection: close".into());
    let mut bytes = (out.join("\r\n") + "\r\n\r\n").into_bytes();
    bytes.extend_from_slice(&response[end + 4..]);
    bytes
}
