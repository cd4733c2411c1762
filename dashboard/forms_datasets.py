"""Forms for datasets and uploads, and the upload handler that caps a file's size while it streams in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django import forms
from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopUpload, TemporaryFileUploadHandler

from evals import ingest

# Multipart framing and the CSRF field add a little to the body beyond the file itself.
MULTIPART_OVERHEAD = 64 * 1024


class CappedUploadHandler(TemporaryFileUploadHandler):
    """Streams every upload to a file under FILE_UPLOAD_TEMP_DIR and stops at the size cap.

    Nothing in Django caps a file's size. This handler refuses a body whose Content-Length is over the
    cap before writing a byte, and stops a chunked or lying body as soon as it passes the cap. The rest
    of the body is read and dropped (connection_reset=False) so the browser gets the error page rather
    than a reset connection.
    """

    def __init__(self, request: Any = None, *, max_bytes: int) -> None:
        super().__init__(request)
        self.max_bytes = max_bytes
        self.too_large = False
        self.received = 0

    def handle_raw_input(
        self, input_data: Any, META: dict[str, Any], content_length: int, boundary: Any, encoding: Any = None
    ) -> None:
        if content_length and content_length > self.max_bytes + MULTIPART_OVERHEAD:
            self.too_large = True

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        if self.too_large:
            raise StopUpload(connection_reset=False)
        # var/uploads is made at start-up; a cleaned-up var/ must not turn an upload into a 500.
        Path(settings.FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)
        FileUploadHandler.new_file(self, *args, **kwargs)
        # Django names the temporary file after the client's extension, so a 250-character extension
        # made the file name too long for the file system (an OSError, a 500). The name on disk is ours;
        # the client's name is only carried as the upload's name.
        self.file = TemporaryUploadedFile(
            "upload", self.content_type, 0, self.charset, self.content_type_extra
        )
        self.file.name = self.file_name

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.received += len(raw_data)
        if self.received > self.max_bytes:
            self.too_large = True
            self.file.close()  # a NamedTemporaryFile: closing deletes it
            raise StopUpload(connection_reset=False)
        return super().receive_data_chunk(raw_data, start)


class UploadForm(forms.Form):
    file = forms.FileField(
        label="File",
        error_messages={"required": "Choose a file to upload.", "empty": "The file is empty."},
    )


class ReadOptionsForm(forms.Form):
    encoding = forms.ChoiceField(choices=list(ingest.ENCODING_LABELS.items()), required=False)
    delimiter = forms.ChoiceField(
        choices=[(key, label) for key, label in ingest.DELIMITER_LABELS.items()], required=False
    )
    sheet = forms.CharField(required=False, max_length=200)


class ImportForm(forms.Form):
    name = forms.CharField(max_length=200, required=False)
    skip_invalid = forms.BooleanField(required=False)


class RenameForm(forms.Form):
    name = forms.CharField(
        max_length=200,
        error_messages={"required": "A dataset needs a name.", "max_length": "At most 200 characters."},
    )
