//! The HTTPS client one node uses to talk to one peer.
//!
//! A peer's certificate is verified either through the web PKI (the Mozilla
//! root store of `webpki-roots`, with the usual host name checks) or, for a
//! self-signed peer, by the SHA-256 of its certificate pinned in the TOML. The
//! client only moves bytes; what they mean is the daemon's business.

use guanxi_protocol::Sha256Hash;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::Arc;
use std::time::Duration;

/// Why a request to a peer failed before an HTTP answer arrived.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot build the HTTPS client: {0}")]
    Build(String),
    #[error("request to {url} failed: {message}")]
    Transport { url: String, message: String },
}

/// An HTTP answer from a peer: status and body bytes.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// How to trust a peer's TLS certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The web PKI (webpki-roots).
    WebPki,
    /// Exactly the certificate with this SHA-256 (of its DER encoding).
    Pinned(Sha256Hash),
    /// Either of two pinned certificates: the one a peer presents and the
    /// one it announced it presents next (or presented before), SPEC §24.
    PinnedEither(Sha256Hash, Sha256Hash),
}

/// A client for one peer.
#[derive(Clone)]
pub struct PeerClient {
    base_url: String,
    http: reqwest::Client,
}

impl PeerClient {
    /// A client for the peer at `base_url` (https://host:port), trusting its
    /// certificate as `trust` says.
    pub fn new(
        base_url: &str,
        trust: &Trust,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Self, ClientError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        let tls = match trust {
            Trust::WebPki => {
                let roots = rustls::RootCertStore::from_iter(
                    webpki_roots::TLS_SERVER_ROOTS.iter().cloned(),
                );
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            Trust::Pinned(hash) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedCert {
                    hashes: vec![*hash],
                    provider,
                }))
                .with_no_client_auth(),
            Trust::PinnedEither(a, b) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedCert {
                    hashes: vec![*a, *b],
                    provider,
                }))
                .with_no_client_auth(),
        };
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            .no_proxy()
            // An envelope goes to the configured peer or nowhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        Ok(PeerClient {
            base_url: base_url.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// POSTs `body` (JSON) to `path` and returns the answer, whatever its status.
    pub async fn post(&self, path: &str, body: Vec<u8>) -> Result<Answer, ClientError> {
        let url = format!("{}{path}", self.base_url);
        let request = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        send(request, url).await
    }

    /// One JSON request with a bearer token (a node's own API, as `guanxi
    /// demo` drives it); the answer whatever its status.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        bearer: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, ClientError> {
        let url = format!("{}{path}", self.base_url);
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| ClientError::Build(e.to_string()))?;
        let mut request = self.http.request(method, &url).bearer_auth(bearer);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        send(request, url).await
    }

    /// GETs `path` and returns the answer, whatever its status.
    pub async fn get(&self, path: &str) -> Result<Answer, ClientError> {
        let url = format!("{}{path}", self.base_url);
        send(self.http.get(&url), url).await
    }
}

/// What a download answered: its status, and for anything but `200`/`206`
/// the body (at most 64 KiB), which is an error's.
#[derive(Debug, Clone)]
pub struct Download {
    pub status: u16,
    pub body: Vec<u8>,
}

impl PeerClient {
    /// GETs `path` with `headers`, allowing `timeout` for the whole answer,
    /// and passes the body of a `200` or `206` answer to `sink` chunk by
    /// chunk (the sink closing stops the download). The channel closes when
    /// the body ends or the download fails.
    pub async fn download(
        &self,
        path: &str,
        headers: &[(String, String)],
        timeout: Duration,
        sink: tokio::sync::mpsc::Sender<Vec<u8>>,
    ) -> Result<Download, ClientError> {
        let url = format!("{}{path}", self.base_url);
        let transport = |e: reqwest::Error| ClientError::Transport {
            url: url.clone(),
            message: error_chain(&e),
        };
        let mut request = self.http.get(&url).timeout(timeout);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        if status != 200 && status != 206 {
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(transport)? {
                if body.len() < 64 * 1024 {
                    body.extend_from_slice(&chunk);
                }
            }
            return Ok(Download { status, body });
        }
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if sink.send(chunk.to_vec()).await.is_err() {
                break;
            }
        }
        Ok(Download {
            status,
            body: Vec::new(),
        })
    }
}

async fn send(request: reqwest::RequestBuilder, url: String) -> Result<Answer, ClientError> {
    let transport = |e: reqwest::Error| ClientError::Transport {
        url: url.clone(),
        message: error_chain(&e),
    };
    let response = request.send().await.map_err(transport)?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(transport)?.to_vec();
    Ok(Answer { status, body })
}

/// The error and its causes, on one line (reqwest's Display hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Trusts exactly one certificate, by the SHA-256 of its DER encoding; the
/// handshake signatures are still verified with that certificate's key.
#[derive(Debug)]
struct PinnedCert {
    hashes: Vec<Sha256Hash>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = Sha256Hash::of(end_entity.as_ref());
        if self.hashes.contains(&got) {
            Ok(ServerCertVerified::assertion())
        } else {
            let pinned: Vec<String> = self.hashes.iter().map(|h| h.to_string()).collect();
            Err(rustls::Error::General(format!(
                "peer certificate sha256 {got} does not match the pinned {}",
                pinned.join(" or ")
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
