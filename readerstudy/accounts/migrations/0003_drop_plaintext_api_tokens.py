"""API tokens moved from DRF's authtoken (keys stored in plain text, never expiring) to django-rest-knox.

The old table is dropped, keys and all, rather than left readable in the database: API clients log in again.
"""

from django.db import migrations


def drop_plaintext_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if "authtoken_token" in connection.introspection.table_names():
        schema_editor.execute(f"DROP TABLE {schema_editor.quote_name('authtoken_token')}")


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_alter_readerprofile_options")]

    operations = [migrations.RunPython(drop_plaintext_tokens, migrations.RunPython.noop)]
