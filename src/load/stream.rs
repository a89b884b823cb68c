//! A session's byte stream: plain TCP, or TLS over it (rustls) for `https://` and `wss://`,
//! and what every session of a run shares to open one: the TLS settings (the system's roots,
//! or `--ca-cert`, or none checked with `--insecure`) and the extra request headers.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// A connection, with or without TLS.
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (boxed: its buffers are not small, and most runs have none).
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// Writes `bytes` and flushes them: a TLS stream may keep records it could not send at
    /// once until flushed, and nothing else would flush them before the answer is awaited.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.write_all(bytes).await?;
        self.flush().await
    }

    /// The socket beneath: idle connections are watched by peeking at it, without reading.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What every session of a run opens its connections with.
#[derive(Default)]
pub struct Wire {
    /// For `https://` and `wss://` targets.
    pub tls: Option<tokio_rustls::TlsConnector>,
    /// Extra request headers, each `Name: value\r\n` (`--header`).
    pub headers: String,
}

/// How the server's certificate is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trust {
    /// Against the system's roots.
    #[default]
    System,
    /// Against the CA certificates in this PEM file (`--ca-cert`).
    CaFile(std::path::PathBuf),
    /// Not at all (`--insecure`): for a test server's self-signed certificate.
    Nobody,
}

impl Wire {
    /// The shared settings of a run: TLS only when a target needs it.
    pub fn new(tls: bool, trust: &Trust, headers: &[(String, String)]) -> Result<Wire, String> {
        let headers = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        let tls = if tls { Some(tokio_rustls::TlsConnector::from(Arc::new(client_config(trust)?))) } else { None };
        Ok(Wire { tls, headers })
    }

    /// Opens `tcp` as `Stream`: through a TLS handshake (SNI and certificate name `host`) when
    /// `tls`.
    pub async fn open(&self, tcp: TcpStream, tls: bool, host: &str) -> io::Result<Stream> {
        if !tls {
            return Ok(Stream::Plain(tcp));
        }
        let connector =
            self.tls.as_ref().ok_or_else(|| io::Error::other("TLS target without TLS settings (a swarmctl bug)"))?;
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
        let stream = connector.connect(name, tcp).await.map_err(|e| io::Error::new(e.kind(), format!("TLS: {e}")))?;
        Ok(Stream::Tls(Box::new(stream)))
    }
}

fn client_config(trust: &Trust) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut roots = rustls::RootCertStore::empty();
    let config = match trust {
        Trust::Nobody => {
            return Ok(builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoCheck(provider)))
                .with_no_client_auth())
        }
        Trust::System => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                // A slim container has none: every handshake would fail as UnknownIssuer.
                return Err("no CA certificate found on this system to check https:// and wss:// servers against: give --ca-cert FILE.pem (or --insecure for a test server)".into());
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::CaFile(path) => {
            use rustls::pki_types::pem::PemObject;
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("--ca-cert {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("--ca-cert {}: {e}", path.display()))?;
                roots.add(cert).map_err(|e| format!("--ca-cert {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("--ca-cert {}: no certificate in it (PEM expected)", path.display()));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(config)
}

/// `--insecure`: any certificate is taken, its signatures still checked to be well formed.
#[derive(Debug)]
struct NoCheck(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
