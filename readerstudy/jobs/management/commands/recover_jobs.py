import time

from django.conf import settings
from django.core.management.base import BaseCommand

from readerstudy.jobs.progress import recover_stale_jobs
from readerstudy.jobs.queue import requeue_unqueued


class Command(BaseCommand):
    help = ("Mark jobs whose worker stopped (no heartbeat) as failed, so they can be retried, and queue again "
            "jobs the task backend never took (it was unreachable). Run before starting workers, and with "
            "--every to keep doing it.")

    def add_arguments(self, parser):
        parser.add_argument("--stale-seconds", type=int, default=None,
                            help="No heartbeat for this long means the worker is gone (default: "
                                 "JOB_STALE_SECONDS; 0: every running job, right when the only worker starts).")
        parser.add_argument("--unqueued-seconds", type=float, default=60,
                            help="Queue again jobs still not handed to the backend after this long (default 60).")
        parser.add_argument("--every", type=float, default=0, help="Repeat every this many seconds (a sweeper).")

    def handle(self, *args, stale_seconds, unqueued_seconds, every, **options):
        stale_seconds = settings.JOB_STALE_SECONDS if stale_seconds is None else stale_seconds
        while True:
            ids = recover_stale_jobs(stale_seconds)
            self.stdout.write(f"{len(ids)} stale job(s) marked failed" + (f": {ids}" if ids else ""))
            queued = requeue_unqueued(unqueued_seconds)
            if queued or not every:
                self.stdout.write(f"{len(queued)} job(s) handed to the task backend again"
                                  + (f": {queued}" if queued else ""))
            if not every:
                return
            time.sleep(every)
