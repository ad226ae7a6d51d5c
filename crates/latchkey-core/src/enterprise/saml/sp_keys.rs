//! The service provider's key pairs, one set per connection: generated here, the private key
//! sealed with the master key. Rotation makes a new `active` pair and keeps the old one as
//! `previous` for an overlap: both certificates are published in the SP metadata and both keys
//! decrypt, so an IdP that has not re-read the metadata yet keeps working.

use latchkey_saml::{binding::SigningKey, keys};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder,
};
use zeroize::Zeroizing;

use crate::{
    Error, Result,
    infra::{entity::saml_sp_key, ids, store::Store},
};

const ACTIVE: &str = "active";
const PREVIOUS: &str = "previous";
/// SP certificates are self-signed and only carry the key: long-lived, rotated on demand.
const CERT_VALID_DAYS: u32 = 3650;
/// How long a rotated-out key keeps being published and decrypting.
pub const ROTATION_OVERLAP_SECS: i64 = 14 * 24 * 3600;

fn seal_purpose(key_id: &str) -> String {
    format!("saml_sp_key:{key_id}")
}

/// Makes and stores a new active key pair for `connection_id`.
pub(crate) async fn create<C: ConnectionTrait>(
    conn: &C,
    store: &Store,
    connection_id: &str,
    now: i64,
) -> Result<saml_sp_key::Model> {
    let pair =
        keys::generate_sp_key_pair(&format!("latchkey {connection_id}"), now, CERT_VALID_DAYS)
            .map_err(|e| Error::Crypto(e.to_string()))?;
    let id = ids::new_id(ids::SAML_SP_KEY);
    let sealed = store.master_key().seal(&seal_purpose(&id), pair.key_pem.as_bytes())?;
    let model = saml_sp_key::ActiveModel {
        id: Set(id),
        connection_id: Set(connection_id.to_owned()),
        key_sealed: Set(sealed),
        cert_pem: Set(pair.cert_pem),
        not_after: Set(pair.not_after),
        status: Set(ACTIVE.into()),
        retires_at: Set(None),
        created_at: Set(now),
    };
    Ok(model.insert(conn).await?)
}

/// Replaces the active key pair; the old one stays as `previous` for the overlap.
pub(crate) async fn rotate<C: ConnectionTrait>(
    conn: &C,
    store: &Store,
    connection_id: &str,
    now: i64,
) -> Result<()> {
    // A key rotated out earlier and still overlapping goes now: one previous key at a time.
    saml_sp_key::Entity::delete_many()
        .filter(saml_sp_key::Column::ConnectionId.eq(connection_id))
        .filter(saml_sp_key::Column::Status.eq(PREVIOUS))
        .exec(conn)
        .await?;
    for old in live(conn, connection_id, now).await? {
        let mut am: saml_sp_key::ActiveModel = old.into();
        am.status = Set(PREVIOUS.into());
        am.retires_at = Set(Some(now + ROTATION_OVERLAP_SECS));
        am.update(conn).await?;
    }
    create(conn, store, connection_id, now).await?;
    Ok(())
}

/// The active key first, then a previous one still in its overlap.
pub(crate) async fn live<C: ConnectionTrait>(
    conn: &C,
    connection_id: &str,
    now: i64,
) -> Result<Vec<saml_sp_key::Model>> {
    let mut keys = saml_sp_key::Entity::find()
        .filter(saml_sp_key::Column::ConnectionId.eq(connection_id))
        .order_by_desc(saml_sp_key::Column::CreatedAt)
        .all(conn)
        .await?;
    keys.retain(|k| k.status == ACTIVE || k.retires_at.is_some_and(|t| t > now));
    keys.sort_by_key(|k| k.status != ACTIVE);
    Ok(keys)
}

fn unseal(store: &Store, key: &saml_sp_key::Model) -> Result<Zeroizing<String>> {
    let pem = store.master_key().open(&seal_purpose(&key.id), &key.key_sealed)?;
    String::from_utf8(pem.to_vec())
        .map(Zeroizing::new)
        .map_err(|_| Error::Crypto("a SAML SP key is not valid PEM".into()))
}

/// The key that signs requests and responses: the active one.
pub(crate) fn signing_key(store: &Store, keys: &[saml_sp_key::Model]) -> Result<SigningKey> {
    let active = keys
        .iter()
        .find(|k| k.status == ACTIVE)
        .ok_or_else(|| Error::Internal("the SAML connection has no active SP key".into()))?;
    Ok(SigningKey {
        key_pem: unseal(store, active)?.to_string(),
        cert_pem: active.cert_pem.clone(),
    })
}

/// Every live private key, for decrypting assertions (active first).
pub(crate) fn decryption_keys(store: &Store, keys: &[saml_sp_key::Model]) -> Result<Vec<String>> {
    keys.iter().map(|k| unseal(store, k).map(|p| p.to_string())).collect()
}

/// The DER certificates to publish.
pub(crate) fn certificates(keys: &[saml_sp_key::Model]) -> Result<Vec<Vec<u8>>> {
    keys.iter()
        .map(|k| {
            latchkey_saml::keys::cert_der(&k.cert_pem).map_err(|e| Error::Crypto(e.to_string()))
        })
        .collect()
}
