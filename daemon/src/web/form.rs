//! Reading a posted form: URL-encoded fields, or `multipart/form-data`
//! with files (service requests, their comments, warranty claims and MDF
//! claims take attachments). Handlers take [`Posted`] in place of `Form`
//! and get the same field map either way.

use crate::attachments::MAX_BYTES;
use crate::node::Node;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;

/// Most files one form may carry.
pub const MAX_FILES: usize = 4;

/// Largest body of a form that may carry files.
pub const BODY_LIMIT: usize = MAX_FILES * MAX_BYTES + 256 * 1024;

/// Form fields by name (the last value of a repeated name).
pub type Fields = HashMap<String, String>;

/// A form field, trimmed ("" when absent).
pub fn field<'a>(f: &'a Fields, name: &str) -> &'a str {
    f.get(name).map_or("", |s| s.trim())
}

/// A file chosen in a form's `file` input.
pub struct Upload {
    pub name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// A posted form: its fields, and the files of its `file` inputs (empty
/// file inputs, which browsers send with no name, are left out).
pub struct Posted(pub Fields, pub Vec<Upload>);

fn bad_form(message: &str) -> Response {
    tracing::info!("web form: {message}");
    (
        StatusCode::BAD_REQUEST,
        format!("The form could not be read: {message}"),
    )
        .into_response()
}

impl FromRequest<Arc<Node>> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, node: &Arc<Node>) -> Result<Self, Response> {
        let multipart = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("multipart/form-data"));
        if !multipart {
            let axum::Form(fields) = axum::Form::<Fields>::from_request(req, node)
                .await
                .map_err(IntoResponse::into_response)?;
            return Ok(Posted(fields, Vec::new()));
        }
        let mut parts = Multipart::from_request(req, node)
            .await
            .map_err(IntoResponse::into_response)?;
        let (mut fields, mut files) = (Fields::new(), Vec::new());
        loop {
            let part = match parts.next_field().await {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => return Err(bad_form(&e.to_string())),
            };
            let name = part.name().unwrap_or("").to_string();
            let file_name = part.file_name().map(str::to_string);
            let content_type = part.content_type().unwrap_or("").to_string();
            let bytes = part.bytes().await.map_err(|e| bad_form(&e.to_string()))?;
            match file_name {
                Some(file_name) if name == "file" => {
                    if file_name.is_empty() && bytes.is_empty() {
                        continue;
                    }
                    if files.len() == MAX_FILES {
                        return Err(bad_form(&format!("at most {MAX_FILES} files per form")));
                    }
                    files.push(Upload {
                        name: file_name,
                        content_type,
                        bytes: bytes.to_vec(),
                    });
                }
                _ => {
                    fields.insert(name, String::from_utf8_lossy(&bytes).into_owned());
                }
            }
        }
        Ok(Posted(fields, files))
    }
}

/// Stores the files of a form as `user`'s uploads: their references for
/// the message, or the refusal naming the first file that was refused.
pub async fn attach(
    node: &Node,
    user: &crate::accounts::User,
    files: Vec<Upload>,
) -> Result<
    Result<Vec<guanxi_protocol::messages::Attachment>, super::access::Refusal>,
    crate::engine::EngineError,
> {
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        let name = f.name.clone();
        match crate::attachments::accept(node, user, f.name, f.content_type, f.bytes).await? {
            Ok(a) => out.push(a),
            Err(e) => {
                return Ok(Err(super::access::Refusal {
                    code: guanxi_protocol::ReasonCode::BadBody,
                    message: format!("{name}: {e}"),
                }));
            }
        }
    }
    Ok(Ok(out))
}
