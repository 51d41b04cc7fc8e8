from django.core.management.base import BaseCommand

from readerstudy.jobs.progress import recover_stale_jobs


class Command(BaseCommand):
    help = "Mark jobs left running by a stopped worker as failed (retryable). Run before starting workers."

    def add_arguments(self, parser):
        parser.add_argument("--stale-seconds", type=int, default=600,
                            help="No progress for this long means the worker is gone (0: every running job, "
                                 "right when the only worker starts).")

    def handle(self, *args, stale_seconds, **options):
        ids = recover_stale_jobs(stale_seconds)
        self.stdout.write(f"{len(ids)} stale job(s) marked failed" + (f": {ids}" if ids else ""))
