"""The native local stack: real services run as plain processes on 127.0.0.1."""
