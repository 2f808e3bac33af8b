"""Task attachments: metadata in PostgreSQL, bytes in object storage."""
