use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    PrimaryEmail,
    EmailVerified,
    Name,
    GivenName,
    FamilyName,
    ImageUrl,
    PublicMetadata,
    PrivateMetadata,
    IsAdmin,
    Status,
    StatusReason,
    CreatedAt,
    UpdatedAt,
    LastSignInAt,
}

#[derive(DeriveIden)]
enum UserEmails {
    Table,
    Id,
    UserId,
    Email,
    Verified,
    CreatedAt,
    VerifiedAt,
}

#[derive(DeriveIden)]
enum PasswordCredentials {
    Table,
    UserId,
    PasswordHash,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Organisations {
    Table,
    Id,
    Name,
    Slug,
    PublicMetadata,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Memberships {
    Table,
    Id,
    OrgId,
    UserId,
    Role,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    SecretHash,
    UserId,
    Status,
    EndReason,
    AuthMethod,
    ClientIp,
    UserAgent,
    ActiveOrgId,
    CreatedAt,
    LastActiveAt,
    IdleExpiresAt,
    ExpiresAt,
    EndedAt,
}

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    Kid,
    Alg,
    PrivateKeyEnc,
    PublicJwk,
    Status,
    CreatedAt,
    RetiredAt,
    PublishUntil,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    OccurredAt,
    Actor,
    Action,
    TargetId,
    ClientIp,
    UserAgent,
    Data,
}

#[derive(DeriveIden)]
enum Settings {
    Table,
    Key,
    Value,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum StoreRevision {
    Table,
    Id,
    Revision,
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
                    .table(Users::Table)
                    .col(id_pk(Users::Id))
                    .col(string_len_uniq(Users::PrimaryEmail, 320))
                    .col(boolean(Users::EmailVerified))
                    .col(string_len_null(Users::Name, 256))
                    .col(string_len_null(Users::GivenName, 256))
                    .col(string_len_null(Users::FamilyName, 256))
                    .col(text_null(Users::ImageUrl))
                    .col(text(Users::PublicMetadata))
                    .col(text(Users::PrivateMetadata))
                    .col(boolean(Users::IsAdmin))
                    .col(string_len(Users::Status, 16))
                    .col(text_null(Users::StatusReason))
                    .col(big_integer(Users::CreatedAt))
                    .col(big_integer(Users::UpdatedAt))
                    .col(big_integer_null(Users::LastSignInAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(UserEmails::Table)
                    .col(id_pk(UserEmails::Id))
                    .col(string_len(UserEmails::UserId, 64))
                    .col(string_len_uniq(UserEmails::Email, 320))
                    .col(boolean(UserEmails::Verified))
                    .col(big_integer(UserEmails::CreatedAt))
                    .col(big_integer_null(UserEmails::VerifiedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(UserEmails::Table, UserEmails::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_user_emails_user")
                    .table(UserEmails::Table)
                    .col(UserEmails::UserId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(PasswordCredentials::Table)
                    .col(id_pk(PasswordCredentials::UserId))
                    .col(text(PasswordCredentials::PasswordHash))
                    .col(big_integer(PasswordCredentials::CreatedAt))
                    .col(big_integer(PasswordCredentials::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(PasswordCredentials::Table, PasswordCredentials::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Organisations::Table)
                    .col(id_pk(Organisations::Id))
                    .col(string_len(Organisations::Name, 256))
                    .col(string_len_uniq(Organisations::Slug, 128))
                    .col(text(Organisations::PublicMetadata))
                    .col(big_integer(Organisations::CreatedAt))
                    .col(big_integer(Organisations::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Memberships::Table)
                    .col(id_pk(Memberships::Id))
                    .col(string_len(Memberships::OrgId, 64))
                    .col(string_len(Memberships::UserId, 64))
                    .col(string_len(Memberships::Role, 64))
                    .col(big_integer(Memberships::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Memberships::Table, Memberships::OrgId)
                            .to(Organisations::Table, Organisations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Memberships::Table, Memberships::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_memberships_org_user")
                    .table(Memberships::Table)
                    .col(Memberships::OrgId)
                    .col(Memberships::UserId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_memberships_user")
                    .table(Memberships::Table)
                    .col(Memberships::UserId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .col(id_pk(Sessions::Id))
                    .col(string_len_uniq(Sessions::SecretHash, 64))
                    .col(string_len(Sessions::UserId, 64))
                    .col(string_len(Sessions::Status, 16))
                    .col(string_len_null(Sessions::EndReason, 64))
                    .col(string_len(Sessions::AuthMethod, 32))
                    .col(string_len_null(Sessions::ClientIp, 64))
                    .col(text_null(Sessions::UserAgent))
                    .col(string_len_null(Sessions::ActiveOrgId, 64))
                    .col(big_integer(Sessions::CreatedAt))
                    .col(big_integer(Sessions::LastActiveAt))
                    .col(big_integer(Sessions::IdleExpiresAt))
                    .col(big_integer(Sessions::ExpiresAt))
                    .col(big_integer_null(Sessions::EndedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Sessions::Table, Sessions::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_user_status")
                    .table(Sessions::Table)
                    .col(Sessions::UserId)
                    .col(Sessions::Status)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SigningKeys::Table)
                    .col(id_pk(SigningKeys::Kid))
                    .col(string_len(SigningKeys::Alg, 16))
                    .col(text(SigningKeys::PrivateKeyEnc))
                    .col(text(SigningKeys::PublicJwk))
                    .col(string_len(SigningKeys::Status, 16))
                    .col(big_integer(SigningKeys::CreatedAt))
                    .col(big_integer_null(SigningKeys::RetiredAt))
                    .col(big_integer_null(SigningKeys::PublishUntil))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(id_pk(AuditEvents::Id))
                    .col(big_integer(AuditEvents::OccurredAt))
                    .col(string_len(AuditEvents::Actor, 128))
                    .col(string_len(AuditEvents::Action, 64))
                    .col(string_len_null(AuditEvents::TargetId, 128))
                    .col(string_len_null(AuditEvents::ClientIp, 64))
                    .col(text_null(AuditEvents::UserAgent))
                    .col(text(AuditEvents::Data))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_events_time")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::OccurredAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Settings::Table)
                    .col(string_len(Settings::Key, 128).primary_key())
                    .col(text(Settings::Value))
                    .col(big_integer(Settings::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        // One row whose counter every cache-invalidating write bumps (session revocation, user
        // deactivation, membership or key changes); nodes compare it instead of polling rows.
        manager
            .create_table(
                Table::create()
                    .table(StoreRevision::Table)
                    .col(integer(StoreRevision::Id).primary_key())
                    .col(big_integer(StoreRevision::Revision))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(StoreRevision::Table)
                    .columns([StoreRevision::Id, StoreRevision::Revision])
                    .values_panic([1.into(), 0.into()])
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            StoreRevision::Table.into_iden(),
            Settings::Table.into_iden(),
            AuditEvents::Table.into_iden(),
            SigningKeys::Table.into_iden(),
            Sessions::Table.into_iden(),
            Memberships::Table.into_iden(),
            Organisations::Table.into_iden(),
            PasswordCredentials::Table.into_iden(),
            UserEmails::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
