//! OpenID Connect provider: the client registry, client secrets (several per client while a
//! rotation overlaps), authorization codes, refresh-token families, consents and the
//! `private_key_jwt` assertion ids seen (replay check). Codes and tokens are stored hashed.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OauthClients {
    Table,
    ClientId,
    Name,
    ClientType,
    RedirectUris,
    PostLogoutRedirectUris,
    GrantTypes,
    TokenEndpointAuthMethod,
    Jwks,
    FirstParty,
    BackchannelLogoutUri,
    AllowedScopes,
    RequirePkce,
    IdTokenAlg,
    AccessTokenTtlSecs,
    IdTokenTtlSecs,
    RefreshTokenTtlSecs,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OauthClientSecrets {
    Table,
    Id,
    ClientId,
    SecretHash,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum OauthCodes {
    Table,
    Id,
    CodeHash,
    ClientId,
    UserId,
    SessionId,
    RedirectUri,
    Scopes,
    Nonce,
    CodeChallenge,
    AuthTime,
    CreatedAt,
    ExpiresAt,
    UsedAt,
    ReplayedAt,
}

#[derive(DeriveIden)]
enum OauthRefreshTokens {
    Table,
    Id,
    FamilyId,
    TokenHash,
    ClientId,
    UserId,
    SessionId,
    Scopes,
    AuthTime,
    CreatedAt,
    ExpiresAt,
    RotatedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum OauthConsents {
    Table,
    Id,
    UserId,
    ClientId,
    Scopes,
    GrantedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum OauthAssertionJtis {
    Table,
    JtiKey,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // List-valued fields (URIs, grant types, scopes) are JSON arrays kept as text.
        manager
            .create_table(
                Table::create()
                    .table(OauthClients::Table)
                    .col(string_len(OauthClients::ClientId, 64).primary_key())
                    .col(string_len(OauthClients::Name, 200))
                    .col(string_len(OauthClients::ClientType, 16))
                    .col(text(OauthClients::RedirectUris))
                    .col(text(OauthClients::PostLogoutRedirectUris))
                    .col(text(OauthClients::GrantTypes))
                    .col(string_len(OauthClients::TokenEndpointAuthMethod, 32))
                    .col(text_null(OauthClients::Jwks))
                    .col(boolean(OauthClients::FirstParty))
                    .col(text_null(OauthClients::BackchannelLogoutUri))
                    .col(text(OauthClients::AllowedScopes))
                    .col(boolean(OauthClients::RequirePkce))
                    .col(string_len(OauthClients::IdTokenAlg, 16))
                    .col(big_integer(OauthClients::AccessTokenTtlSecs))
                    .col(big_integer(OauthClients::IdTokenTtlSecs))
                    .col(big_integer(OauthClients::RefreshTokenTtlSecs))
                    .col(big_integer(OauthClients::CreatedAt))
                    .col(big_integer(OauthClients::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        // Hex SHA-256 of each secret; `expires_at` is set on the old secret when a new one is
        // issued, so both work during the overlap.
        manager
            .create_table(
                Table::create()
                    .table(OauthClientSecrets::Table)
                    .col(string_len(OauthClientSecrets::Id, 64).primary_key())
                    .col(string_len(OauthClientSecrets::ClientId, 64))
                    .col(string_len_uniq(OauthClientSecrets::SecretHash, 64))
                    .col(big_integer(OauthClientSecrets::CreatedAt))
                    .col(big_integer_null(OauthClientSecrets::ExpiresAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(OauthClientSecrets::Table, OauthClientSecrets::ClientId)
                            .to(OauthClients::Table, OauthClients::ClientId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_oauth_client_secrets_client")
                    .table(OauthClientSecrets::Table)
                    .col(OauthClientSecrets::ClientId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(OauthCodes::Table)
                    .col(string_len(OauthCodes::Id, 64).primary_key())
                    .col(string_len_uniq(OauthCodes::CodeHash, 64))
                    .col(string_len(OauthCodes::ClientId, 64))
                    .col(string_len(OauthCodes::UserId, 64))
                    .col(string_len(OauthCodes::SessionId, 64))
                    .col(text(OauthCodes::RedirectUri))
                    .col(text(OauthCodes::Scopes))
                    .col(text_null(OauthCodes::Nonce))
                    .col(string_len_null(OauthCodes::CodeChallenge, 64))
                    .col(big_integer(OauthCodes::AuthTime))
                    .col(big_integer(OauthCodes::CreatedAt))
                    .col(big_integer(OauthCodes::ExpiresAt))
                    .col(big_integer_null(OauthCodes::UsedAt))
                    // Set when the code came back after its first use: the grant is revoked.
                    .col(big_integer_null(OauthCodes::ReplayedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(OauthCodes::Table, OauthCodes::ClientId)
                            .to(OauthClients::Table, OauthClients::ClientId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        // A family is every refresh token descended from one grant (its id is the code's id):
        // reusing a rotated token, or replaying the code, revokes the whole family.
        manager
            .create_table(
                Table::create()
                    .table(OauthRefreshTokens::Table)
                    .col(string_len(OauthRefreshTokens::Id, 64).primary_key())
                    .col(string_len(OauthRefreshTokens::FamilyId, 64))
                    .col(string_len_uniq(OauthRefreshTokens::TokenHash, 64))
                    .col(string_len(OauthRefreshTokens::ClientId, 64))
                    .col(string_len(OauthRefreshTokens::UserId, 64))
                    .col(string_len(OauthRefreshTokens::SessionId, 64))
                    .col(text(OauthRefreshTokens::Scopes))
                    .col(big_integer(OauthRefreshTokens::AuthTime))
                    .col(big_integer(OauthRefreshTokens::CreatedAt))
                    .col(big_integer(OauthRefreshTokens::ExpiresAt))
                    .col(big_integer_null(OauthRefreshTokens::RotatedAt))
                    .col(big_integer_null(OauthRefreshTokens::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(OauthRefreshTokens::Table, OauthRefreshTokens::ClientId)
                            .to(OauthClients::Table, OauthClients::ClientId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("idx_oauth_refresh_tokens_family", OauthRefreshTokens::FamilyId),
            ("idx_oauth_refresh_tokens_session", OauthRefreshTokens::SessionId),
        ] {
            manager
                .create_index(
                    Index::create().name(name).table(OauthRefreshTokens::Table).col(col).to_owned(),
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(OauthConsents::Table)
                    .col(string_len(OauthConsents::Id, 64).primary_key())
                    .col(string_len(OauthConsents::UserId, 64))
                    .col(string_len(OauthConsents::ClientId, 64))
                    .col(text(OauthConsents::Scopes))
                    .col(big_integer(OauthConsents::GrantedAt))
                    .col(big_integer_null(OauthConsents::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(OauthConsents::Table, OauthConsents::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(OauthConsents::Table, OauthConsents::ClientId)
                            .to(OauthClients::Table, OauthClients::ClientId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_oauth_consents_user_client")
                    .table(OauthConsents::Table)
                    .col(OauthConsents::UserId)
                    .col(OauthConsents::ClientId)
                    .unique()
                    .to_owned(),
            )
            .await?;

        // `<client_id>:<sha256(jti)>`; rows are kept until the assertion would have expired.
        manager
            .create_table(
                Table::create()
                    .table(OauthAssertionJtis::Table)
                    .col(string_len(OauthAssertionJtis::JtiKey, 200).primary_key())
                    .col(big_integer(OauthAssertionJtis::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            OauthAssertionJtis::Table.into_iden(),
            OauthConsents::Table.into_iden(),
            OauthRefreshTokens::Table.into_iden(),
            OauthCodes::Table.into_iden(),
            OauthClientSecrets::Table.into_iden(),
            OauthClients::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
