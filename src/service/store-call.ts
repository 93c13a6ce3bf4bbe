/** The one place where a failing store call becomes data the device can be told about. */
import { OAuthError, UnavailableError } from '../core/errors.ts';
import { MalformedFlowError } from '../store/codec.ts';

/**
 * Runs a store call; any failure of the store itself becomes `UnavailableError('store')` (answered
 * `temporarily_unavailable`). OAuth errors and unavailability raised inside `op` pass through unchanged, and so does
 * a stored flow that cannot be read back ({@link MalformedFlowError}): retrying would not help, so the device is told
 * `server_error` and the record is logged as an error, not as an outage.
 */
export async function storeCall<T>(op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if (err instanceof OAuthError || err instanceof UnavailableError || err instanceof MalformedFlowError)
      throw err;
    throw new UnavailableError('store', 'the store failed', { cause: err });
  }
}
