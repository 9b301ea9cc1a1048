"""Starts the upload service: `python -m services.upload`."""

from __future__ import annotations

import logging
import threading

from services.common import logs, mongo, periodic
from services.common.clients import admin_confirmer, internal_channel, jwks_verifier
from services.common.grpc_server import serve
from services.common.settings import Settings
from services.upload.repository import FileRepository, UploadSlotRepository
from services.upload.server import MinRate, UploadServicer
from services.upload.service import StorageQuota, UploadService
from services.upload.storage import open_storage
from services.upload.task_client import TaskClient
from services.upload.upload_slots import UploadSlots
from services.upload.user_files import PageLimits, UserFiles
from services.worker.csv_source import CsvLimits

log = logging.getLogger(__name__)


def main() -> None:
    settings = Settings.from_env()
    logs.configure("upload", settings.log_level)
    db = mongo.connect(settings, "upload")
    files = FileRepository(db)
    files.ensure_indexes()
    slot_records = UploadSlotRepository(db)
    slot_records.ensure_indexes()
    storage = open_storage(settings.upload_storage, settings.upload_dir, db)
    grace = settings.upload_orphan_grace_seconds

    def sweep_orphans() -> None:
        if removed := storage.sweep_orphans(grace):
            log.info("deleted what interrupted uploads left", extra={"uploads": removed})

    stop = threading.Event()
    periodic.every(min(grace / 4, 3600.0), sweep_orphans, stop, name="orphan-sweep",
                   first_now=True)
    slots = UploadSlots(slot_records, per_user=settings.upload_max_concurrent_per_user,
                        lease_seconds=settings.upload_slot_lease_seconds)
    periodic.every(slots.renew_every(), slots.renew_held, stop, name="upload-slot-heartbeat")
    quota = StorageQuota(settings.upload_max_stored_bytes_per_user,
                         settings.file_retention_seconds)
    tasks = TaskClient(internal_channel(settings, "task"))
    service = UploadService(files, storage, tasks, settings.max_upload_bytes, slots=slots,
                            quota=quota, csv_limits=CsvLimits.from_settings(settings))
    user_files = UserFiles(files, service, tasks, PageLimits(
        default=settings.task_list_default_limit, max=settings.task_list_max_limit))
    min_rate = MinRate(settings.upload_min_bytes_per_second, settings.upload_min_rate_grace_seconds)
    serve(settings, "upload", UploadServicer(service, min_rate, user_files),
          verifier=jwks_verifier(settings),
          confirm_admin=admin_confirmer(settings), on_stop=stop.set)


if __name__ == "__main__":
    main()
