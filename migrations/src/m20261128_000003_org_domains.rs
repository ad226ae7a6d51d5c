//! Organisation invitations, verified domains and join requests (suggestions).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Organisations {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum OrgInvitations {
    Table,
    Id,
    OrgId,
    Email,
    Role,
    TokenHash,
    Status,
    Source,
    DomainId,
    InviterUserId,
    CreatedAt,
    ExpiresAt,
    AcceptedAt,
    AcceptedBy,
    RevokedAt,
}

#[derive(DeriveIden)]
enum OrgDomains {
    Table,
    Id,
    OrgId,
    Domain,
    VerifiedDomain,
    VerificationToken,
    VerifiedAt,
    VerificationMethod,
    EnrollmentMode,
    EmailCodeHash,
    EmailCodeAddress,
    EmailCodeExpiresAt,
    EmailCodeSentAt,
    EmailCodeAttempts,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OrgJoinRequests {
    Table,
    Id,
    OrgId,
    UserId,
    DomainId,
    Status,
    CreatedAt,
    RequestedAt,
    DecidedAt,
    DecidedBy,
}

fn id_pk<T: IntoIden>(col: T) -> ColumnDef {
    string_len(col, 64).primary_key().take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OrgInvitations::Table)
                    .col(id_pk(OrgInvitations::Id))
                    .col(string_len(OrgInvitations::OrgId, 64))
                    .col(string_len(OrgInvitations::Email, 320))
                    .col(string_len(OrgInvitations::Role, 64))
                    .col(string_len_uniq(OrgInvitations::TokenHash, 64))
                    .col(string_len(OrgInvitations::Status, 16))
                    .col(string_len(OrgInvitations::Source, 16))
                    .col(string_len_null(OrgInvitations::DomainId, 64))
                    .col(string_len_null(OrgInvitations::InviterUserId, 64))
                    .col(big_integer(OrgInvitations::CreatedAt))
                    .col(big_integer(OrgInvitations::ExpiresAt))
                    .col(big_integer_null(OrgInvitations::AcceptedAt))
                    .col(string_len_null(OrgInvitations::AcceptedBy, 64))
                    .col(big_integer_null(OrgInvitations::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(OrgInvitations::Table, OrgInvitations::OrgId)
                            .to(Organisations::Table, Organisations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(OrgInvitations::Table, OrgInvitations::InviterUserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_org_invitations_org_email")
                    .table(OrgInvitations::Table)
                    .col(OrgInvitations::OrgId)
                    .col(OrgInvitations::Email)
                    .to_owned(),
            )
            .await?;
        // A user's pending invitations are looked up by address.
        manager
            .create_index(
                Index::create()
                    .name("idx_org_invitations_email")
                    .table(OrgInvitations::Table)
                    .col(OrgInvitations::Email)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(OrgDomains::Table)
                    .col(id_pk(OrgDomains::Id))
                    .col(string_len(OrgDomains::OrgId, 64))
                    .col(string_len(OrgDomains::Domain, 253))
                    // NULL until verified; unique, so two organisations can never both hold the
                    // same verified domain (a partial unique index would not be portable).
                    .col(string_len_null(OrgDomains::VerifiedDomain, 253).unique_key())
                    .col(string_len(OrgDomains::VerificationToken, 128))
                    .col(big_integer_null(OrgDomains::VerifiedAt))
                    .col(string_len_null(OrgDomains::VerificationMethod, 16))
                    .col(string_len(OrgDomains::EnrollmentMode, 32))
                    .col(string_len_null(OrgDomains::EmailCodeHash, 64))
                    .col(string_len_null(OrgDomains::EmailCodeAddress, 320))
                    .col(big_integer_null(OrgDomains::EmailCodeExpiresAt))
                    .col(big_integer_null(OrgDomains::EmailCodeSentAt))
                    .col(integer(OrgDomains::EmailCodeAttempts).default(0))
                    .col(big_integer(OrgDomains::CreatedAt))
                    .col(big_integer(OrgDomains::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(OrgDomains::Table, OrgDomains::OrgId)
                            .to(Organisations::Table, Organisations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_org_domains_org_domain")
                    .table(OrgDomains::Table)
                    .col(OrgDomains::OrgId)
                    .col(OrgDomains::Domain)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_org_domains_domain")
                    .table(OrgDomains::Table)
                    .col(OrgDomains::Domain)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(OrgJoinRequests::Table)
                    .col(id_pk(OrgJoinRequests::Id))
                    .col(string_len(OrgJoinRequests::OrgId, 64))
                    .col(string_len(OrgJoinRequests::UserId, 64))
                    .col(string_len_null(OrgJoinRequests::DomainId, 64))
                    .col(string_len(OrgJoinRequests::Status, 16))
                    .col(big_integer(OrgJoinRequests::CreatedAt))
                    .col(big_integer_null(OrgJoinRequests::RequestedAt))
                    .col(big_integer_null(OrgJoinRequests::DecidedAt))
                    .col(string_len_null(OrgJoinRequests::DecidedBy, 128))
                    .foreign_key(
                        ForeignKey::create()
                            .from(OrgJoinRequests::Table, OrgJoinRequests::OrgId)
                            .to(Organisations::Table, Organisations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(OrgJoinRequests::Table, OrgJoinRequests::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_org_join_requests_org_user")
                    .table(OrgJoinRequests::Table)
                    .col(OrgJoinRequests::OrgId)
                    .col(OrgJoinRequests::UserId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_org_join_requests_user")
                    .table(OrgJoinRequests::Table)
                    .col(OrgJoinRequests::UserId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            OrgJoinRequests::Table.into_iden(),
            OrgDomains::Table.into_iden(),
            OrgInvitations::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
