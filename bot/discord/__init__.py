"""The Discord shell: cogs parse interactions, call services, format replies. No domain logic here."""
