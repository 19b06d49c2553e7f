// Finds files shipped with the package (models/), from source (tsx) or from dist/.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && JSON.parse(readFileSync(pkg, 'utf8')).name === 'kfqn') return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the kfqn package root');
    dir = up;
  }
}

/** The bundled default: the K-BFGS paper's MNIST autoencoder (scripts/make-models.py). */
export const DEFAULT_MODEL = 'models/mnist-autoencoder.onnx';
