// Child entry of the hostile suite: prints the report as one JSON line. argv: dataset file.
import { runHostileSuite } from './hostile';

runHostileSuite(process.env['SECRET_TOKEN'] ?? '', process.argv[2] ?? '').then(
  (r) => process.stdout.write(JSON.stringify(r) + '\n'),
  (e: unknown) => {
    process.stderr.write(String((e as Error).stack ?? e) + '\n');
    process.exit(1);
  },
);
