"""Calling the web demo's HTTP API from Python (scripts/serve.py): the multipart body of a
`POST /predict` with one image and its metadata fields. Standard library only."""

from __future__ import annotations

import uuid


def multipart(fields: dict, image: bytes, filename: str = "image.jpg",
              content_type: str = "image/jpeg") -> tuple[bytes, str]:
    """(body, boundary) of a multipart/form-data request: each field, then the image file.
    Send with `Content-Type: multipart/form-data; boundary=<boundary>`."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
                 f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'.encode()
                 + image + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), boundary
