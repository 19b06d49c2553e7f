// The `kfqn` command: inspect, augment, grad, train.
import { grad, inspect, augment } from './graph-commands.js';
import { train } from './train-command.js';
import { formatError } from './errors.js';

const HELP = `kfqn — train existing ONNX models with Kronecker-factored quasi-Newton optimizers

Usage:
  kfqn train [MODEL] [options]        train (no MODEL: the bundled MNIST autoencoder on the bundled digits)
  kfqn grad MODEL --loss L --input NAME=FILE.pb [--input ...] --target FILE.pb [--json]
  kfqn inspect MODEL [--json]         trainable layers, Kronecker factor sizes, constants
  kfqn augment MODEL --loss L -o TRAIN.onnx
  kfqn help [COMMAND]

Run 'kfqn help train' for the training options.`;

const COMMANDS: Record<string, (args: string[]) => Promise<void>> = { train, grad, inspect, augment };

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    const topic = command === 'help' ? rest[0] : undefined;
    if (topic && COMMANDS[topic]) await COMMANDS[topic](['--help']);
    else console.log(HELP);
    return 0;
  }
  if (command === '--version' || command === '-v') {
    console.log('kfqn 0.1.0');
    return 0;
  }
  const cmd = COMMANDS[command];
  if (!cmd) {
    console.error(`kfqn: unknown command '${command}'. Commands: ${Object.keys(COMMANDS).join(', ')} (kfqn --help)`);
    return 2;
  }
  try {
    await cmd(rest);
    return 0;
  } catch (e) {
    const { message, code } = formatError(e);
    console.error(`kfqn ${command}: ${message}`);
    return code;
  }
}

