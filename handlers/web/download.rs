//! Reading an archive a git host serves, within a size.

use crate::ports::PortError;

/// The body of `response`, refused once it passes `max` bytes (`what`
/// names the archive in the errors; a connection that breaks off is
/// transient).
pub(super) async fn read_capped(
    mut response: reqwest::Response,
    max: u64,
    what: &str,
) -> Result<Vec<u8>, PortError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        PortError::transient(format!(
            "the download of {what} broke off: {}",
            e.without_url()
        ))
    })? {
        if (bytes.len() + chunk.len()) as u64 > max {
            return Err(PortError::permanent(format!(
                "{what} is larger than {max} bytes, more than a snapshot within the limits comes from (IMAGE_FACTORY_SNAPSHOT_MAX_BYTES, IMAGE_FACTORY_SNAPSHOT_MAX_FILES)"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}
