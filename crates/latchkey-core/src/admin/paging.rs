//! What every administrative listing shares: the page shape, the page-size rule, opaque
//! cursors, and "the members of an organisation" as a subquery. A cursor names the last row of
//! its page (its ID, or its time and ID for newest-first listings), so the next page starts
//! strictly after it whatever was written meanwhile, and a deep page costs what the first does.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use sea_orm::{ColumnTrait, sea_query::Query};

use crate::{
    Error, Result,
    infra::{entity::membership, ids},
};

pub const MAX_PAGE_SIZE: u64 = 200;

/// One page of a listing, and where the next one starts (None on the last page).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

/// The page size asked for, or `default`; 1..=[`MAX_PAGE_SIZE`].
pub fn page_size(asked: Option<u64>, default: u64) -> Result<u64> {
    let limit = asked.unwrap_or(default);
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(Error::invalid("limit", "must be between 1 and 200"));
    }
    Ok(limit)
}

/// Cuts the `limit + 1` rows read down to a page; the cursor is made from the last row kept.
pub fn page_of<M, T>(
    mut rows: Vec<M>,
    limit: u64,
    cursor: impl Fn(&M) -> String,
    into: impl FnMut(M) -> T,
) -> Page<T> {
    let next_cursor = if rows.len() as u64 > limit {
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        rows.last().map(cursor)
    } else {
        None
    };
    Page { data: rows.into_iter().map(into).collect(), next_cursor }
}

fn invalid_cursor() -> Error {
    Error::invalid("cursor", "is not a cursor of this listing")
}

/// A cursor of an ID-ordered listing.
pub fn id_cursor(id: &str) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

/// The ID an [`id_cursor`] names, which must carry `prefix`.
pub fn decode_id_cursor(cursor: &str, prefix: &str) -> Result<String> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid_cursor())?;
    let id = String::from_utf8(bytes).map_err(|_| invalid_cursor())?;
    if !ids::is_valid(prefix, &id) {
        return Err(invalid_cursor());
    }
    Ok(id)
}

/// A cursor of a newest-first listing: the last row's time and ID.
pub fn time_cursor(at: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{at}:{id}"))
}

/// The (time, ID) a [`time_cursor`] names; the ID must carry `prefix`.
pub fn decode_time_cursor(cursor: &str, prefix: &str) -> Result<(i64, String)> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid_cursor())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid_cursor())?;
    let (at, id) = text.split_once(':').ok_or_else(invalid_cursor)?;
    let at: i64 = at.parse().map_err(|_| invalid_cursor())?;
    if !ids::is_valid(prefix, id) {
        return Err(invalid_cursor());
    }
    Ok((at, id.to_owned()))
}

/// The users with a membership (of any status) in `org_id`.
pub fn members_of(org_id: &str) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .column(membership::Column::UserId)
        .from(membership::Entity)
        .and_where(membership::Column::OrgId.eq(org_id))
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let user = ids::new_id(ids::USER);
        assert_eq!(decode_id_cursor(&id_cursor(&user), ids::USER).unwrap(), user);
        let evt = ids::new_id(ids::AUDIT_EVENT);
        let c = time_cursor(1_800_000_000, &evt);
        assert_eq!(decode_time_cursor(&c, ids::AUDIT_EVENT).unwrap(), (1_800_000_000, evt));
        // Another listing's cursor, junk, and a forged one are all refused.
        assert!(decode_id_cursor(&id_cursor(&user), ids::ORGANISATION).is_err());
        assert!(decode_time_cursor(&c, ids::SESSION).is_err());
        for junk in ["", "!!", "dXNyX3g"] {
            assert!(decode_id_cursor(junk, ids::USER).is_err(), "{junk}");
            assert!(decode_time_cursor(junk, ids::USER).is_err(), "{junk}");
        }
        let forged = URL_SAFE_NO_PAD.encode(format!("x:{user}"));
        assert!(decode_time_cursor(&forged, ids::USER).is_err());
    }

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(page_size(None, 50).unwrap(), 50);
        assert_eq!(page_size(Some(200), 50).unwrap(), 200);
        assert!(page_size(Some(0), 50).is_err());
        assert!(page_size(Some(201), 50).is_err());
    }

    #[test]
    fn a_page_keeps_limit_rows_and_points_past_the_last() {
        let page = page_of(vec![1, 2, 3], 2, |n| n.to_string(), |n| n * 10);
        assert_eq!((page.data, page.next_cursor), (vec![10, 20], Some("2".into())));
        let last = page_of(vec![1, 2], 2, |n| n.to_string(), |n| n);
        assert_eq!(last.next_cursor, None);
    }
}
