"""What the storage backend raises when it fails. A file system raises OSError; an object store
(django-storages' S3 backend, through boto3) raises botocore's own errors, which are not OSError:
code that must survive a storage outage (report the file, retry the task) catches these."""

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:  # no S3 support installed: only file system storages
    STORAGE_ERRORS: tuple[type[Exception], ...] = (OSError,)
else:
    STORAGE_ERRORS = (OSError, BotoCoreError, ClientError)
