from django.core.management.base import BaseCommand

from readerstudy.imaging.garbage import delete_garbage, find_garbage


class Command(BaseCommand):
    help = ("List pool files that no row refers to (left by a killed import or preparation): master files, "
            "rendition folders and unfinished temporaries; and uploads of succeeded, expired or vanished import "
            "jobs. Nothing is deleted without --delete.")

    def add_arguments(self, parser):
        parser.add_argument("--delete", action="store_true", help="delete what is listed (default: only list)")
        parser.add_argument("--min-age", type=float, default=3600,
                            help="leave files younger than this many seconds (an import may still be writing "
                                 "them; default 3600)")

    def handle(self, *args, **opts):
        garbage = find_garbage(opts["min_age"])
        for label, paths in (("master file with no pool item", garbage.orphan_masters),
                             ("rendition folder with no row", garbage.orphan_renditions),
                             ("unfinished temporary", garbage.stale_partials),
                             ("uploaded files no import will use", garbage.stale_uploads)):
            for path in paths:
                self.stdout.write(f"{label}: {path}")
        for text in garbage.missing:
            self.stderr.write(f"missing on disk (restore from backup): {text}")
        total = len(garbage.paths)
        if not total:
            self.stdout.write("Nothing to collect.")
            return
        size = garbage.size_bytes() / 1024**2
        if opts["delete"]:
            removed = delete_garbage(garbage)
            self.stdout.write(f"Deleted {removed} of {total} ({size:,.1f} MiB).")
        else:
            self.stdout.write(f"{total} to collect ({size:,.1f} MiB); run again with --delete to delete them.")
