//! S3 backend over aws-sdk-s3, configured explicitly (endpoint, region, static credentials) rather than
//! from the AWS environment chain, so the same settings work for AWS and for S3-compatible servers.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::primitives::ByteStream;

use crate::{ObjectBackend, ObjectError};

#[derive(Clone, Debug)]
pub struct S3Store {
    client: Client,
    bucket: String,
}

pub struct S3Settings<'a> {
    pub endpoint: &'a str,
    pub region: &'a str,
    pub bucket: &'a str,
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub path_style: bool,
}

fn s3_err<E: std::error::Error + 'static>(e: aws_sdk_s3::error::SdkError<E>) -> ObjectError {
    // DisplayErrorContext walks the source chain, so the message says what the server answered.
    ObjectError::S3(aws_sdk_s3::error::DisplayErrorContext(e).to_string())
}

impl S3Store {
    pub fn new(settings: &S3Settings<'_>) -> Self {
        let credentials =
            Credentials::new(settings.access_key_id, settings.secret_access_key, None, None, "onshi-config");
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.region.to_owned()))
            .endpoint_url(settings.endpoint)
            .credentials_provider(credentials)
            .force_path_style(settings.path_style)
            // Only when required: several S3-compatible servers reject the newer default checksums.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Self { client: Client::from_conf(config), bucket: settings.bucket.to_owned() }
    }

    /// Creates the bucket unless it exists. Deployments normally provision it; tests and `onshi demo` do not.
    pub async fn ensure_bucket(&self) -> Result<(), ObjectError> {
        if self.client.head_bucket().bucket(&self.bucket).send().await.is_ok() {
            return Ok(());
        }
        self.client.create_bucket().bucket(&self.bucket).send().await.map_err(s3_err)?;
        Ok(())
    }

    /// Deletes every object and then the bucket. For tests.
    pub async fn destroy_bucket(&self) -> Result<(), ObjectError> {
        for key in self.list("").await? {
            self.delete(&key).await?;
        }
        self.client.delete_bucket().bucket(&self.bucket).send().await.map_err(s3_err)?;
        Ok(())
    }
}

impl ObjectBackend for S3Store {
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), ObjectError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(s3_err)?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ObjectError> {
        match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => {
                let data = out.body.collect().await.map_err(|e| ObjectError::S3(e.to_string()))?;
                Ok(Some(data.into_bytes().to_vec()))
            }
            Err(e) => {
                if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                    Ok(None)
                } else {
                    Err(s3_err(e))
                }
            }
        }
    }

    async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        self.client.delete_object().bucket(&self.bucket).key(key).send().await.map_err(s3_err)?;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(s3_err)?;
            keys.extend(out.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
            match out.next_continuation_token() {
                Some(next) if out.is_truncated().unwrap_or(false) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }
}
