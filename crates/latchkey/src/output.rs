//! Plain-text renderings of CLI results. `--json` prints one object shape per noun (the domain
//! type, or [`UserView`] for users), the same in `show`, in `list` items and after a change;
//! secrets shown once are added to that object as extra fields.

use latchkey_core::{
    model::{Membership, Session, SigningKeyInfo, User},
    oauth::clients::Client,
    oauth::jwt_templates::JwtTemplate,
    sign_in::LockoutStatus,
};

/// A user as `--json` prints it everywhere: the user, their memberships and their sign-in
/// lockout state.
#[derive(serde::Serialize)]
pub struct UserView {
    #[serde(flatten)]
    pub user: User,
    pub memberships: Vec<Membership>,
    pub sign_in_lockout: LockoutStatus,
}

pub fn print_json<T: serde::Serialize + ?Sized>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => say!("{s}"),
        Err(e) => eprintln!("error: cannot encode output: {e}"),
    }
}

pub fn time(t: Option<i64>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map_or_else(|| "-".to_owned(), |d| d.format("%Y-%m-%d %H:%M:%SZ").to_string())
}

pub fn users_table(users: &[User]) {
    say!("{:<30} {:<32} {:<12} {:<6} {}", "ID", "EMAIL", "STATUS", "ADMIN", "LAST SIGN-IN");
    for u in users {
        say!(
            "{:<30} {:<32} {:<12} {:<6} {}",
            u.id,
            u.primary_email,
            u.status.as_str(),
            u.is_admin,
            time(u.last_sign_in_at)
        );
    }
}

pub fn user_details(u: &User, memberships: &[Membership], lockout: &LockoutStatus) {
    say!("id:            {}", u.id);
    say!("email:         {} (verified: {})", u.primary_email, u.email_verified);
    say!("name:          {}", u.name.as_deref().unwrap_or("-"));
    say!(
        "status:        {}{}",
        u.status.as_str(),
        u.status_reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
    );
    say!("administrator: {}", u.is_admin);
    say!("created:       {}", time(Some(u.created_at)));
    say!("last sign-in:  {}", time(u.last_sign_in_at));
    match lockout.locked_until {
        Some(until) => say!(
            "sign-in:       LOCKED until {} after {} failures (latchkey users unlock)",
            time(Some(until)),
            lockout.failures
        ),
        None if lockout.failures > 0 => {
            say!("sign-in:       {} recent failed attempts", lockout.failures)
        }
        None => {}
    }
    for m in memberships {
        say!("member of:     {} as {}", m.org_id, m.role);
    }
}

pub fn sessions_table(sessions: &[Session]) {
    say!(
        "{:<30} {:<30} {:<8} {:<8} {:<21} {}",
        "ID",
        "USER",
        "STATUS",
        "METHOD",
        "LAST ACTIVE",
        "CLIENT"
    );
    for s in sessions {
        say!(
            "{:<30} {:<30} {:<8} {:<8} {:<21} {}",
            s.id,
            s.user_id,
            s.status.as_str(),
            s.auth_method,
            time(Some(s.last_active_at)),
            s.client_ip.as_deref().unwrap_or("-")
        );
    }
}

pub fn keys_table(keys: &[SigningKeyInfo]) {
    say!(
        "{:<30} {:<6} {:<8} {:<10} {:<21} {}",
        "KID",
        "ALG",
        "STATUS",
        "PUBLISHED",
        "CREATED",
        "PUBLISHED UNTIL"
    );
    for k in keys {
        say!(
            "{:<30} {:<6} {:<8} {:<10} {:<21} {}",
            k.kid,
            k.alg,
            k.status,
            k.published,
            time(Some(k.created_at)),
            if k.status == "active" { "-".to_owned() } else { time(k.publish_until) }
        );
    }
}

pub fn clients_table(clients: &[Client]) {
    say!(
        "{:<34} {:<13} {:<12} {:<24} {:<32} {}",
        "CLIENT ID",
        "TYPE",
        "FIRST-PARTY",
        "TEMPLATES (AT/ID)",
        "AUDIENCES",
        "NAME"
    );
    for c in clients {
        let templates = format!(
            "{}/{}",
            c.access_token_template.as_deref().unwrap_or("-"),
            c.id_token_template.as_deref().unwrap_or("-")
        );
        let audiences = if c.audiences.is_empty() { "-".to_owned() } else { c.audiences.join(",") };
        say!(
            "{:<34} {:<13} {:<12} {:<24} {:<32} {}",
            c.client_id,
            c.client_type.as_str(),
            c.first_party,
            templates,
            audiences,
            c.name
        );
    }
}

pub fn client_details(c: &Client) {
    say!("client id:      {}", c.client_id);
    say!("name:           {}", c.name);
    say!("type:           {}", c.client_type.as_str());
    say!("first party:    {}", c.first_party);
    say!("auth method:    {}", c.token_endpoint_auth_method);
    say!("grant types:    {}", c.grant_types.join(" "));
    say!("scopes:         {}", c.allowed_scopes.join(" "));
    say!("id token alg:   {}", c.id_token_alg);
    say!("access token:   {} s", c.access_token_ttl_secs);
    for uri in &c.redirect_uris {
        say!("redirect uri:   {uri}");
    }
    for uri in &c.post_logout_redirect_uris {
        say!("post-logout:    {uri}");
    }
    if let Some(uri) = &c.backchannel_logout_uri {
        say!("back-channel:   {uri}");
    }
    for aud in &c.audiences {
        say!("audience:       {aud}");
    }
    if let Some(t) = &c.access_token_template {
        say!("at template:    {t}");
    }
    if let Some(t) = &c.id_token_template {
        say!("id template:    {t}");
    }
    say!("created:        {}", time(Some(c.created_at)));
}

pub fn templates_table(templates: &[JwtTemplate]) {
    say!("{:<24} {:<9} {:<9} {}", "NAME", "SIGNING", "LIFETIME", "CREATED");
    for t in templates {
        say!(
            "{:<24} {:<9} {:<9} {}",
            t.name,
            t.signing,
            format!("{} s", t.lifetime_secs),
            time(Some(t.created_at))
        );
    }
}

pub fn template_details(t: &JwtTemplate) {
    say!("name:      {}", t.name);
    say!("id:        {}", t.id);
    say!("signing:   {}", t.signing);
    say!("lifetime:  {} s", t.lifetime_secs);
    say!("created:   {}", time(Some(t.created_at)));
    say!("claims:    {}", serde_json::to_string_pretty(&t.claims).unwrap_or_default());
}
