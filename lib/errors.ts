/** Bad user input (a tensor of the wrong shape, an unknown input name, a missing file): a clear one-line message. */
export class InputError extends Error {
  constructor(message: string) { super(message); this.name = 'InputError'; }
}
