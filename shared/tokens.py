"""Bearer secrets (session tokens, invitation tokens): random, shown once, stored only as a hash."""
import hashlib
import secrets


def new_token():
    """32 random bytes, URL-safe: unguessable, and fine in a URL path."""
    return secrets.token_urlsafe(32)


def hash_token(token):
    """What is stored and looked up; a database leak yields no usable token."""
    return hashlib.sha256(token.encode()).hexdigest()
