use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "saml_connections")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub enabled: bool,
    pub idp_entity_id: String,
    /// The IdP's SSO endpoints (at least one is set).
    pub idp_sso_redirect_url: Option<String>,
    pub idp_sso_post_url: Option<String>,
    pub idp_slo_url: Option<String>,
    pub idp_slo_binding: Option<String>,
    /// JSON array of base64 DER certificates.
    pub idp_certs: String,
    pub metadata_url: Option<String>,
    pub metadata_xml: Option<String>,
    pub metadata_fetched_at: Option<i64>,
    pub metadata_error: Option<String>,
    pub metadata_next_refresh_at: Option<i64>,
    /// JSON of `enterprise::saml::ConnectionOptions`.
    pub options: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
