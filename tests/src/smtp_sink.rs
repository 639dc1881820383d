//! A small SMTP server for tests: it listens on a loopback port the system
//! chose, takes every mail the daemon sends (EHLO, MAIL, RCPT, DATA, QUIT),
//! and keeps it decoded (subject and text body) for the test to read. It
//! can be told to refuse mail for a while (`451`), as a mail server that is
//! down would.

use base64::Engine as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// One mail as received.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The Subject header, decoded.
    pub subject: String,
    /// The text body, decoded.
    pub body: String,
}

#[derive(Default)]
struct Shared {
    mails: Mutex<Vec<Mail>>,
    arrived: Notify,
    refuse: AtomicBool,
}

/// The running sink.
pub struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl SmtpSink {
    /// Starts the sink on 127.0.0.1 at a port the system picks.
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let shared = Arc::new(Shared::default());
        let serve = shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = serve.clone();
                tokio::spawn(async move {
                    let _ = session(stream, &shared).await;
                });
            }
        });
        SmtpSink { addr, shared }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Answers `MAIL FROM` with 451 (try again later) while `on`.
    pub fn refuse(&self, on: bool) {
        self.shared.refuse.store(on, Ordering::SeqCst);
    }

    /// Every mail so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.shared.mails.lock().expect("lock").clone()
    }

    /// Waits until at least `n` mails arrived (panics after `timeout`).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Mail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.shared.arrived.notified();
            let mails = self.mails();
            if mails.len() >= n {
                return mails;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!("{} mail(s) arrived, not {n}: {mails:#?}", mails.len());
            }
        }
    }
}

async fn session(stream: tokio::net::TcpStream, shared: &Shared) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink ESMTP\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_string();
        let upper = command.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
        } else if upper.starts_with("HELO")
            || upper.starts_with("RSET")
            || upper.starts_with("NOOP")
        {
            b"250 ok\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            if shared.refuse.load(Ordering::SeqCst) {
                b"451 4.3.0 try again later\r\n"
            } else {
                from = address(&command);
                to.clear();
                b"250 ok\r\n"
            }
        } else if upper.starts_with("RCPT TO:") {
            to.push(address(&command));
            b"250 ok\r\n"
        } else if upper == "DATA" {
            write.write_all(b"354 go on\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            let (subject, body) = decode(&data);
            shared.mails.lock().expect("lock").push(Mail {
                from: from.clone(),
                to: to.clone(),
                subject,
                body,
            });
            shared.arrived.notify_waiters();
            b"250 queued\r\n"
        } else if upper == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            b"502 not here\r\n"
        };
        write.write_all(reply).await?;
    }
}

fn address(command: &str) -> String {
    command
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(a, _)| a.to_string())
        .unwrap_or_default()
}

/// The subject and the text body of a mail's data (headers unfolded;
/// RFC 2047 words and base64 or quoted-printable bodies decoded).
fn decode(data: &str) -> (String, String) {
    let data = data.replace("\r\n", "\n");
    let (head, body) = data.split_once("\n\n").unwrap_or((&data, ""));
    let head = head.replace("\n ", " ").replace("\n\t", " ");
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let subject = header("Subject")
        .split(' ')
        .map(encoded_word)
        .collect::<Vec<_>>()
        .join(" ")
        .replace("\u{0} ", "")
        .replace('\u{0}', "");
    let body = match header("Content-Transfer-Encoding")
        .to_ascii_lowercase()
        .as_str()
    {
        "base64" => String::from_utf8_lossy(
            &base64::engine::general_purpose::STANDARD
                .decode(body.split_whitespace().collect::<String>())
                .unwrap_or_default(),
        )
        .into_owned(),
        "quoted-printable" => quoted_printable(body),
        _ => body.to_string(),
    };
    (subject, body)
}

/// One RFC 2047 encoded word decoded (`=?utf-8?b?...?=`); other text as
/// is. Adjacent encoded words join without the space between them: the
/// marker NUL + space is removed by the caller.
fn encoded_word(word: &str) -> String {
    let Some(inner) = word.strip_prefix("=?").and_then(|w| w.strip_suffix("?=")) else {
        return word.to_string();
    };
    let mut parts = inner.splitn(3, '?');
    let (_charset, encoding, text) = (parts.next(), parts.next(), parts.next());
    let bytes = match (encoding.map(str::to_ascii_lowercase).as_deref(), text) {
        (Some("b"), Some(t)) => base64::engine::general_purpose::STANDARD
            .decode(t)
            .unwrap_or_default(),
        (Some("q"), Some(t)) => quoted_printable(&t.replace('_', " ")).into_bytes(),
        _ => return word.to_string(),
    };
    format!("{}\u{0}", String::from_utf8_lossy(&bytes))
}

fn quoted_printable(text: &str) -> String {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' if bytes.get(i + 1) == Some(&b'\n') => i += 2,
            b'=' => {
                let hex = text.get(i + 1..i + 3).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'=');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out)
        .trim_end_matches('\u{0}')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_bodies_are_decoded() {
        let data = "Subject: =?utf-8?b?5ZWG5qmf?= =?utf-8?b?5YiG5rS+?=\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nA =E5=95=86 b=\r\nc\r\n";
        let (subject, body) = decode(data);
        assert_eq!(subject, "商機分派");
        assert_eq!(body, "A 商 bc\n");
    }
}
