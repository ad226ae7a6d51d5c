use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OauthClients {
    Table,
    Audiences,
    AccessTokenTemplate,
    IdTokenTemplate,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Per client: the audiences client_credentials may ask for (RFC 8707 resource
        // indicators; a JSON list, NULL for none) and the JWT templates (by name) whose claims
        // go into its access and ID tokens. SQLite adds one column per ALTER TABLE.
        for column in [
            text_null(OauthClients::Audiences),
            string_len_null(OauthClients::AccessTokenTemplate, 64),
            string_len_null(OauthClients::IdTokenTemplate, 64),
        ] {
            manager
                .alter_table(
                    Table::alter().table(OauthClients::Table).add_column(column).to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            OauthClients::Audiences,
            OauthClients::AccessTokenTemplate,
            OauthClients::IdTokenTemplate,
        ] {
            manager
                .alter_table(
                    Table::alter().table(OauthClients::Table).drop_column(column).to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
