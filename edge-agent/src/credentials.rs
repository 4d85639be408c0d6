//! What enrollment gives the agent, kept in `data_dir/credentials.json`, readable by the agent's user only.

use std::path::{Path, PathBuf};

use onshi_domain::{ClinicId, DeviceId, MedicalInstitutionCode, TenantId};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub server: String,
    pub tenant: TenantId,
    pub clinic: ClinicId,
    pub institution_code: MedicalInstitutionCode,
    pub device: DeviceId,
    #[serde(serialize_with = "expose")]
    pub device_secret: SecretString,
    #[serde(serialize_with = "expose")]
    pub pseudonym_key: SecretString,
}

fn expose<S: serde::Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose_secret())
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("server", &self.server)
            .field("tenant", &self.tenant)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("this agent is not enrolled ({0} not found); run `onshi-agent enroll --server URL --code CODE`")]
    NotEnrolled(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a valid credentials file: {source}")]
    Format { path: PathBuf, source: serde_json::Error },
}

impl Credentials {
    /// What the parsers need to know about this enrolled clinic: its code (files for another are refused)
    /// and the group's pseudonymisation key.
    pub fn parse_context(&self) -> crate::oqs::ParseContext {
        crate::oqs::ParseContext {
            clinic: Some(self.institution_code.clone()),
            pseudonym_key: self.pseudonym_key_bytes(),
        }
    }

    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("credentials.json")
    }

    pub fn load(data_dir: &Path) -> Result<Self, CredentialsError> {
        let path = Self::path(data_dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(CredentialsError::NotEnrolled(path)),
            Err(source) => return Err(CredentialsError::Io { path, source }),
        };
        serde_json::from_slice(&bytes).map_err(|source| CredentialsError::Format { path, source })
    }

    /// Writes atomically (temporary file, then rename), with mode 0600 on Unix.
    pub fn save(&self, data_dir: &Path) -> Result<(), CredentialsError> {
        let path = Self::path(data_dir);
        let io = |source| CredentialsError::Io { path: path.clone(), source };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let tmp = data_dir.join(".credentials.json.tmp");
        let json = serde_json::to_vec_pretty(self)
            .map_err(|source| CredentialsError::Format { path: path.clone(), source })?;
        {
            use std::io::Write;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&tmp).map_err(io)?;
            file.write_all(&json).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(())
    }

    pub fn pseudonym_key_bytes(&self) -> Vec<u8> {
        hex::decode(self.pseudonym_key.expose_secret())
            .unwrap_or_else(|_| self.pseudonym_key.expose_secret().as_bytes().to_vec())
    }
}
