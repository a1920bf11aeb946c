"""Assignment editions and families: reading and checking their files, telling a notebook's
edition."""
