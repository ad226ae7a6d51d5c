//! Console forms that carry a file (the SAML wizard's IdP metadata) arrive as
//! `multipart/form-data`; this reads such a form's fields as text, within a size limit.

use std::collections::HashMap;

use futures_util::StreamExt as _;
use latchkey_core::Error as CoreError;

use crate::error::page::PageError;

/// Every field of the form as text (a file's content too), keyed by field name; at most `max`
/// bytes in all. A field that is not UTF-8, a broken body or one over the limit is refused.
pub async fn text_fields(
    mut form: actix_multipart::Multipart,
    max: usize,
) -> Result<HashMap<String, String>, PageError> {
    let unreadable = || PageError::from(CoreError::invalid("form", "could not be read"));
    let mut fields = HashMap::new();
    let mut left = max;
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|_| unreadable())?;
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = field
            .bytes(left)
            .await
            .map_err(|_| {
                PageError::from(CoreError::invalid("form", "is too large (1 MiB at most)"))
            })?
            .map_err(|_| unreadable())?;
        left = left.saturating_sub(bytes.len());
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| PageError::from(CoreError::invalid(field_name(&name), "is not text")))?;
        fields.insert(name, text);
    }
    Ok(fields)
}

/// A field's name for an error message (only names the page has).
fn field_name(name: &str) -> &'static str {
    match name {
        "metadata_file" => "metadata_file",
        "certificate" => "certificate",
        _ => "form",
    }
}
