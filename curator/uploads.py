"""An upload handler for requests of many small files.

Django keeps uploaded files in memory only when the WHOLE request is under
FILE_UPLOAD_MAX_MEMORY_SIZE; otherwise every file, however small, becomes a temporary file on
disk, which costs milliseconds each: seconds for a selection of thousands of photos. This handler
decides per file: a file stays in memory up to FILE_UPLOAD_MAX_MEMORY_SIZE, while the request's
files in memory stay under UPLOAD_MEMORY_BUDGET; anything beyond goes to a temporary file as usual."""

from io import BytesIO

from django.conf import settings
from django.core.files.uploadedfile import InMemoryUploadedFile, TemporaryUploadedFile
from django.core.files.uploadhandler import FileUploadHandler

# Memory one request's files may take before further files spill to temporary files.
UPLOAD_MEMORY_BUDGET = 64 * 1024 * 1024


class SmallFilesInMemoryUploadHandler(FileUploadHandler):
    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.in_memory = 0
        return None

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.buffer: BytesIO | None = BytesIO()
        self.spilled: TemporaryUploadedFile | None = None

    def receive_data_chunk(self, raw_data, start):
        if self.spilled is None:
            size = self.buffer.tell() + len(raw_data)
            if size > settings.FILE_UPLOAD_MAX_MEMORY_SIZE or self.in_memory + len(raw_data) > UPLOAD_MEMORY_BUDGET:
                self.spilled = TemporaryUploadedFile(
                    self.file_name, self.content_type, 0, self.charset, self.content_type_extra
                )
                self.spilled.write(self.buffer.getvalue())
                self.in_memory -= self.buffer.tell()
                self.buffer = None
        if self.spilled is not None:
            self.spilled.write(raw_data)
        else:
            self.buffer.write(raw_data)
            self.in_memory += len(raw_data)
        return None  # this handler keeps every byte: no later handler sees them

    def file_complete(self, file_size):
        if self.spilled is not None:
            self.spilled.seek(0)
            self.spilled.size = file_size
            return self.spilled
        self.buffer.seek(0)
        return InMemoryUploadedFile(
            file=self.buffer,
            field_name=self.field_name,
            name=self.file_name,
            content_type=self.content_type,
            size=file_size,
            charset=self.charset,
            content_type_extra=self.content_type_extra,
        )
