//! Stream identity: an ed25519 key pair. The public key is the stream id users type.
//!
//! Text form of a stream id: the 32 public-key bytes in RFC 4648 base32 without padding,
//! lower case (52 characters). Parsing is case-insensitive and ignores surrounding space, so an
//! id survives being read aloud, retyped in capitals or pasted from a terminal.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use data_encoding::BASE32_NOPAD;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// Length of the text form of a stream id.
pub const STREAM_ID_TEXT_LEN: usize = 52;

/// The public identity of a stream: an ed25519 verifying key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamId(pub [u8; 32]);

impl StreamId {
    /// The key chunks are checked against. A weak key (a point of small order, which no key
    /// pair made by bl-chunk has) is refused: every signature checked one by one would fail
    /// against it, and a batch check could pass a forgery.
    pub fn verifying_key(&self) -> Result<VerifyingKey> {
        let key = VerifyingKey::from_bytes(&self.0)
            .map_err(|_| anyhow::anyhow!("stream id {self} is not a valid ed25519 public key"))?;
        if key.is_weak() {
            bail!("stream id {self} is a weak ed25519 public key (of small order)");
        }
        Ok(key)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&BASE32_NOPAD.encode(&self.0).to_ascii_lowercase())
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({self})")
    }
}

impl FromStr for StreamId {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.len() != STREAM_ID_TEXT_LEN {
            bail!(
                "malformed stream id '{}': expected {STREAM_ID_TEXT_LEN} base32 characters, got {}",
                shorten(text),
                text.chars().count()
            );
        }
        let bytes = BASE32_NOPAD
            .decode(text.to_ascii_uppercase().as_bytes())
            .map_err(|_| {
                anyhow::anyhow!(
                    "malformed stream id '{}': not base32 (letters a-z and digits 2-7)",
                    shorten(text)
                )
            })?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| {
            anyhow::anyhow!("malformed stream id '{}': wrong length", shorten(text))
        })?;
        let id = StreamId(key);
        id.verifying_key().map_err(|_| {
            anyhow::anyhow!(
                "malformed stream id '{}': not a valid public key (typo?)",
                shorten(text)
            )
        })?;
        Ok(id)
    }
}

fn shorten(text: &str) -> String {
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(57).collect::<String>())
    } else {
        text.to_string()
    }
}

/// Prefix of the one-line secret key file, so a stray file is never mistaken for a key.
const KEY_FILE_PREFIX: &str = "bl-secret-key-v1:";

/// A stream's signing key.
pub struct StreamKey {
    signing: SigningKey,
}

impl StreamKey {
    /// A fresh key from the OS random generator.
    pub fn generate() -> Result<Self> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed)
            .map_err(|e| anyhow::anyhow!("cannot get random bytes for a new key: {e}"))?;
        Ok(Self::from_seed(seed))
    }

    /// A key from a 32-byte seed (tests and simulations use fixed seeds).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        StreamKey {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    pub fn id(&self) -> StreamId {
        StreamId(self.signing.verifying_key().to_bytes())
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// Loads the key at `path`, or creates it (mode 0600) when the file does not exist.
    /// Returns the key and whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool)> {
        match fs::metadata(path) {
            Ok(_) => Ok((Self::load(path)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate()?;
                key.save_new(path)?;
                Ok((key, true))
            }
            Err(e) => Err(e).with_context(|| format!("cannot read key {}", path.display())),
        }
    }

    /// Loads a key, refusing files that group or others can read (like ssh does).
    pub fn load(path: &Path) -> Result<Self> {
        let meta =
            fs::metadata(path).with_context(|| format!("cannot read key {}", path.display()))?;
        if !meta.is_file() {
            let what = match meta.is_dir() {
                true => "a directory",
                false => "not a regular file",
            };
            bail!(
                "key {} is {what}: a key is a file of its own",
                path.display()
            );
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "key {} is readable by others (mode {mode:04o}); run: chmod 600 {}",
                path.display(),
                path.display()
            );
        }
        let text = fs::read_to_string(path)
            .with_context(|| format!("cannot read key {}", path.display()))?;
        let malformed = || {
            anyhow::anyhow!(
                "key {} is malformed: expected one line '{KEY_FILE_PREFIX}<52 base32 characters>'",
                path.display()
            )
        };
        let encoded = text
            .trim()
            .strip_prefix(KEY_FILE_PREFIX)
            .ok_or_else(malformed)?;
        let seed = BASE32_NOPAD
            .decode(encoded.to_ascii_uppercase().as_bytes())
            .map_err(|_| malformed())?;
        let seed: [u8; 32] = seed.try_into().map_err(|_| malformed())?;
        Ok(Self::from_seed(seed))
    }

    fn save_new(&self, path: &Path) -> Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot create key {}", path.display()))?;
        let line = format!(
            "{KEY_FILE_PREFIX}{}\n",
            BASE32_NOPAD
                .encode(&self.signing.to_bytes())
                .to_ascii_lowercase()
        );
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write key {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_id_text_round_trip_case_insensitive() {
        let id = StreamKey::from_seed([7; 32]).id();
        let text = id.to_string();
        assert_eq!(text.len(), STREAM_ID_TEXT_LEN);
        assert_eq!(text.parse::<StreamId>().unwrap(), id);
        assert_eq!(
            format!("  {}\n", text.to_uppercase())
                .parse::<StreamId>()
                .unwrap(),
            id
        );
    }

    #[test]
    fn malformed_stream_ids_name_the_problem() {
        let err = "abc".parse::<StreamId>().unwrap_err().to_string();
        assert!(err.contains("expected 52"), "{err}");
        let err = "1".repeat(52).parse::<StreamId>().unwrap_err().to_string();
        assert!(err.contains("not base32"), "{err}");
        // The identity point, of order 1: a valid encoding, but a weak key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let text = StreamId(identity).to_string();
        let err = text.parse::<StreamId>().unwrap_err().to_string();
        assert!(err.contains("not a valid public key"), "{err}");
        assert!(StreamId(identity).verifying_key().is_err());
    }
}
