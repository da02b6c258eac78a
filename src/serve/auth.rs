//! HTTP basic authentication with a constant-time credential check.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use subtle::{Choice, ConstantTimeEq};

use super::{ServeError, ServeErrorKind};

/// The one user name and password the endpoint accepts (HTTP basic authentication,
/// RFC 7617).
///
/// The check takes the same time whatever the submitted credentials are: every byte of
/// the expected user name and password is compared, with no early exit (only their
/// lengths, which do not vary, decide how long it takes). `Debug` never prints the
/// password.
///
/// Basic authentication sends the password in clear text on every request: use it with
/// TLS ([`ServeConfig::tls`](super::ServeConfig::tls)) or on loopback only.
#[derive(Clone)]
pub struct BasicAuth {
    user: Vec<u8>,
    password: Vec<u8>,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("user", &String::from_utf8_lossy(&self.user))
            .field("password", &"<redacted>")
            .finish()
    }
}

impl BasicAuth {
    /// Accepts `user` with `password`.
    ///
    /// # Errors
    /// [`ServeErrorKind::Config`] when the user name is empty or contains `:` (which
    /// the `user:password` encoding cannot carry), or the password is empty.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Result<BasicAuth, ServeError> {
        let (user, password) = (user.into(), password.into());
        if user.is_empty() || user.contains(':') {
            return Err(ServeError::new(ServeErrorKind::Config, "basic auth user name")
                .expected("a non-empty name without ':'"));
        }
        if password.is_empty() {
            return Err(ServeError::new(ServeErrorKind::Config, "basic auth password").expected("a non-empty password"));
        }
        Ok(BasicAuth { user: user.into_bytes(), password: password.into_bytes() })
    }

    /// Accepts `user` with the password stored in the file at `path` (its first line;
    /// a trailing `\n` or `\r\n` is not part of the password). Keeping the password
    /// in a file keeps it out of command lines and process listings.
    ///
    /// # Errors
    /// [`ServeErrorKind::Config`] naming the file when it cannot be read or is not
    /// UTF-8, and as [`BasicAuth::new`].
    pub fn from_password_file(user: impl Into<String>, path: impl AsRef<Path>) -> Result<BasicAuth, ServeError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ServeError::new(ServeErrorKind::Config, path.display().to_string())
                .expected("a readable UTF-8 password file")
                .caused_by(e)
        })?;
        let password = text.lines().next().unwrap_or("");
        BasicAuth::new(user, password).map_err(|e| e.with_subject(path.display().to_string()))
    }

    /// Whether an `Authorization` header value carries these credentials.
    pub(crate) fn check(&self, header: Option<&[u8]>) -> bool {
        let Some(header) = header else { return false };
        let Some(encoded) = strip_scheme(header) else { return false };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim_ascii()) else {
            return false;
        };
        let (user, password) = match decoded.iter().position(|&b| b == b':') {
            Some(i) => (&decoded[..i], &decoded[i + 1..]),
            None => (&decoded[..], &[][..]),
        };
        // `&` on `Choice`s: both comparisons always run.
        bool::from(secret_eq(user, &self.user) & secret_eq(password, &self.password))
    }

    /// The `Authorization` header value for these credentials (for clients).
    pub(crate) fn header_value(&self) -> String {
        let mut plain = self.user.clone();
        plain.push(b':');
        plain.extend_from_slice(&self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(plain))
    }
}

/// `Basic <credentials>` → `<credentials>`; the scheme name is case-insensitive.
fn strip_scheme(header: &[u8]) -> Option<&[u8]> {
    let header = header.trim_ascii_start();
    let (scheme, rest) = header.split_at_checked(5)?;
    (scheme.eq_ignore_ascii_case(b"basic") && rest.first().is_some_and(|b| *b == b' ')).then(|| &rest[1..])
}

/// Compares `given` with `secret` in time that depends on `secret.len()` only: every
/// secret byte is compared (against a zero past the end of `given`), and the results
/// are combined without branching.
fn secret_eq(given: &[u8], secret: &[u8]) -> Choice {
    let mut equal = (given.len() as u64).ct_eq(&(secret.len() as u64));
    for (i, s) in secret.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(0);
        equal &= g.ct_eq(s);
    }
    equal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(plain: &str) -> Vec<u8> {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(plain)).into_bytes()
    }

    #[test]
    fn accepts_exactly_the_configured_credentials() {
        let auth = BasicAuth::new("prom", "s3cret:with:colons").unwrap();
        assert!(auth.check(Some(&header("prom:s3cret:with:colons"))));
        assert!(auth.check(Some(b"basic cHJvbTpzM2NyZXQ6d2l0aDpjb2xvbnM=")));
        assert!(auth.check(Some(auth.header_value().as_bytes())));
        for wrong in ["prom:s3cret", "prom:s3cret:with:colonsX", "pro:s3cret:with:colons", "prom", "", ":"] {
            assert!(!auth.check(Some(&header(wrong))), "{wrong:?}");
        }
        assert!(!auth.check(None));
        assert!(!auth.check(Some(b"Bearer cHJvbTpzM2NyZXQ=")));
        assert!(!auth.check(Some(b"Basic !!!not base64")));
        assert!(!auth.check(Some(b"Basic")));
    }

    #[test]
    fn rejects_unusable_credentials_and_hides_the_password() {
        assert_eq!(BasicAuth::new("", "p").unwrap_err().kind(), ServeErrorKind::Config);
        assert_eq!(BasicAuth::new("a:b", "p").unwrap_err().kind(), ServeErrorKind::Config);
        assert_eq!(BasicAuth::new("a", "").unwrap_err().kind(), ServeErrorKind::Config);
        let shown = format!("{:?}", BasicAuth::new("prom", "hunter2").unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
